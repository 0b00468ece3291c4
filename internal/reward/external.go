package reward

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
)

// SignatureHeader carries the HMAC-SHA256 signature of call_external requests and of their
// confirmation callbacks: "v1=<hex>", over "<grant_id>.<step>.<body>", keyed with the step's secret.
const SignatureHeader = "Perk-Signature"

// call_external limits and defaults.
const (
	defaultConfirmTimeout = 24 * time.Hour
	maxConfirmTimeout     = 30 * 24 * time.Hour
	defaultRequestTimeout = 10 * time.Second
	maxRequestTimeout     = 60 * time.Second
	minSecretLength       = 16
	maxResponseBytes      = 64 << 10
)

// externalParams are the params of call_external.
type externalParams struct {
	// URL receives the POST (http or https).
	URL string `json:"url"`
	// Secret keys the HMAC-SHA256 signatures of the request and of the confirmation callback
	// (at least 16 characters).
	Secret string `json:"secret"`
	// TimeoutSeconds is how long the step waits for its confirmation before it fails (default one day).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// PollSeconds, when set, re-sends the request (same idempotency key, same body) this often
	// while the step waits, and takes a "done" answer as the confirmation.
	PollSeconds int `json:"poll_seconds,omitempty"`
	// RequestTimeoutSeconds bounds one HTTP request (default 10, at most 60).
	RequestTimeoutSeconds int `json:"request_timeout_seconds,omitempty"`
	// Data is sent as the request's "data" member (a JSON object).
	Data json.RawMessage `json:"data,omitempty"`
}

func (p externalParams) confirmTimeout() time.Duration {
	if p.TimeoutSeconds > 0 {
		return time.Duration(p.TimeoutSeconds) * time.Second
	}
	return defaultConfirmTimeout
}

func (p externalParams) requestTimeout() time.Duration {
	if p.RequestTimeoutSeconds > 0 {
		return time.Duration(p.RequestTimeoutSeconds) * time.Second
	}
	return defaultRequestTimeout
}

// externalRequest is the body POSTed to the merchant. It is the same on every attempt of a step,
// so the merchant's idempotency layer sees one request.
type externalRequest struct {
	GrantID    string          `json:"grant_id"`
	Step       string          `json:"step"`
	TenantID   string          `json:"tenant_id"`
	UserID     string          `json:"user_id"`
	SourceKind string          `json:"source_kind"`
	SourceID   string          `json:"source_id"`
	Params     json.RawMessage `json:"params"`
	Data       json.RawMessage `json:"data"`
	// CallbackPath is where to POST the confirmation (relative to the API's base URL).
	CallbackPath string `json:"callback_path"`
}

// externalAnswer is what the merchant answers, synchronously or in its callback.
type externalAnswer struct {
	// Status is "done", "pending" or "failed".
	Status string          `json:"status"`
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// externalComponent calls a merchant system.
type externalComponent struct{ client *http.Client }

func (externalComponent) Name() string { return ComponentCallExternal }

func (externalComponent) Validate(params json.RawMessage) error {
	var fs problem.Fields
	var p externalParams
	if !decodeParams(&fs, params, &p) {
		return fs.Err("invalid call_external params")
	}
	if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fs.Add("url", "must be an absolute http or https URL")
	}
	if len(p.Secret) < minSecretLength || len(p.Secret) > 256 {
		fs.Add("secret", "must be %d to 256 characters", minSecretLength)
	}
	if p.TimeoutSeconds < 0 || time.Duration(p.TimeoutSeconds)*time.Second > maxConfirmTimeout {
		fs.Add("timeout_seconds", "must be between 1 and %d", int(maxConfirmTimeout.Seconds()))
	}
	if p.PollSeconds < 0 || p.PollSeconds > p.TimeoutSeconds && p.TimeoutSeconds > 0 {
		fs.Add("poll_seconds", "must be positive and at most timeout_seconds")
	}
	if p.RequestTimeoutSeconds < 0 || time.Duration(p.RequestTimeoutSeconds)*time.Second > maxRequestTimeout {
		fs.Add("request_timeout_seconds", "must be between 1 and %d", int(maxRequestTimeout.Seconds()))
	}
	if _, ok := compactObject(p.Data); !ok {
		fs.Add("data", "must be a JSON object")
	}
	return fs.Err("invalid call_external params")
}

// Run POSTs the step's request with its idempotency key and reads the answer.
func (c externalComponent) Run(ctx context.Context, sc StepContext) (Result, error) {
	var p externalParams
	if err := json.Unmarshal(sc.Params, &p); err != nil {
		return Result{}, err
	}
	data, _ := compactObject(p.Data)
	g := sc.Grant
	body := mustJSON(externalRequest{GrantID: g.ID, Step: sc.Step, TenantID: g.TenantID, UserID: g.UserID,
		SourceKind: g.SourceKind, SourceID: g.SourceID, Params: g.Params, Data: data,
		CallbackPath: "/v1/grants/" + g.ID + "/steps/" + sc.Step + "/callback"})
	ctx, cancel := context.WithTimeout(ctx, p.requestTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", strconv.Quote(sc.Key))
	req.Header.Set(SignatureHeader, Sign(p.Secret, g.ID, sc.Step, body))
	resp, err := c.client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("call_external: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return Result{}, fmt.Errorf("call_external: read answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Result{}, fmt.Errorf("call_external: %s answered %d", redactURL(p.URL), resp.StatusCode)
	}
	var ans externalAnswer
	if len(bytes.TrimSpace(raw)) > 0 {
		_ = json.Unmarshal(raw, &ans) // an unreadable 2xx answer means: wait for the confirmation
	}
	return answerResult(sc, p, ans)
}

// Confirm verifies a confirmation callback and reads it.
func (c externalComponent) Confirm(_ context.Context, sc StepContext, signature string, body []byte) (Result, error) {
	var p externalParams
	if err := json.Unmarshal(sc.Params, &p); err != nil {
		return Result{}, err
	}
	if !Verify(p.Secret, sc.Grant.ID, sc.Step, body, signature) {
		return Result{}, problem.Unauthenticated("the callback's %s header does not match its body", SignatureHeader).
			WithCode("callback-signature-invalid")
	}
	var ans externalAnswer
	if err := json.Unmarshal(body, &ans); err != nil || (ans.Status != "done" && ans.Status != "failed") {
		return Result{}, problem.Invalid(`the callback body must be {"status":"done","output":{…}} or {"status":"failed","error":"…"}`).
			WithField("body.status", "must be done or failed")
	}
	return answerResult(sc, p, ans)
}

// answerResult turns the merchant's answer into a step result.
func answerResult(sc StepContext, p externalParams, ans externalAnswer) (Result, error) {
	switch ans.Status {
	case "done":
		out, ok := compactObject(ans.Output)
		if !ok {
			out = mustJSON(map[string]json.RawMessage{"value": ans.Output})
		}
		return Result{Done: true, Output: out}, nil
	case "failed":
		msg := ans.Error
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return Result{}, fmt.Errorf("call_external: the merchant reported a failure: %q", msg)
	}
	wait := sc.WaitUntil
	if wait.IsZero() {
		wait = sc.Now.Add(p.confirmTimeout())
	}
	res := Result{WaitUntil: wait}
	if p.PollSeconds > 0 {
		res.RecheckAt = sc.Now.Add(time.Duration(p.PollSeconds) * time.Second)
	}
	return res, nil
}

// Sign returns the Perk-Signature value of a call_external request or confirmation body.
func Sign(secret, grantID, step string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(grantID + "." + step + "."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a Perk-Signature value in constant time. Several comma-separated values (during a
// secret rotation on the merchant's side) pass when one matches.
func Verify(secret, grantID, step string, body []byte, signature string) bool {
	want := Sign(secret, grantID, step, body)
	ok := false
	for part := range strings.SplitSeq(signature, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(part)), []byte(want)) {
			ok = true
		}
	}
	return ok
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the merchant"
	}
	return u.Scheme + "://" + u.Host
}

var errTimedOut = errors.New("timed out waiting for the confirmation")
