// Package client is a Go client for the perk REST API. The integration tests drive perk through it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls one perk server with one bearer credential (an API key or a user token).
type Client struct {
	baseURL string
	bearer  string
	http    *http.Client
}

// New returns a client for the server at baseURL (e.g. "http://127.0.0.1:8080").
func New(baseURL, bearer string) *Client {
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), bearer: bearer,
		http: &http.Client{Timeout: 30 * time.Second}}
}

// WithBearer returns a copy of the client that sends another credential.
func (c *Client) WithBearer(bearer string) *Client {
	cp := *c
	cp.bearer = bearer
	return &cp
}

// WithHTTPClient returns a copy of the client that uses hc.
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	cp := *c
	cp.http = hc
	return &cp
}

// FieldError is one problem with one input field.
type FieldError struct {
	Location string `json:"location"`
	Message  string `json:"message"`
}

// Problem is an RFC 9457 problem returned by the server. It is the error type of every call.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Instance  string       `json:"instance"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors"`
	// Raw is the whole document, extensions included.
	Raw map[string]any `json:"-"`
}

// Error implements error.
func (p *Problem) Error() string {
	msg := fmt.Sprintf("perk: %d %s: %s", p.Status, p.Slug(), p.Detail)
	for _, e := range p.Errors {
		msg += "; " + e.Location + ": " + e.Message
	}
	return msg
}

// Slug is the last part of the problem type, e.g. "not-found".
func (p *Problem) Slug() string { return p.Type[strings.LastIndex(p.Type, "/")+1:] }

// Option changes one request.
type Option func(*http.Request)

// IdempotencyKey sends the Idempotency-Key header (as a Structured Field string).
func IdempotencyKey(key string) Option {
	return func(r *http.Request) { r.Header.Set("Idempotency-Key", `"`+key+`"`) }
}

// Header sets a request header.
func Header(name, value string) Option {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

// Response is what Do returns besides the decoded body.
type Response struct {
	Status int
	Header http.Header
}

// Do sends a request with in as its JSON body (nil for none) and decodes a 2xx answer into out (nil
// to discard). A non-2xx answer is returned as a *Problem.
func (c *Client) Do(ctx context.Context, method, path string, in, out any, opts ...Option) (Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return Response{}, fmt.Errorf("perk: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, body)
	if err != nil {
		return Response{}, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode >= 300 {
		return r, decodeProblem(resp.StatusCode, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return r, fmt.Errorf("perk: decode %s %s: %w", method, path, err)
		}
	}
	return r, nil
}

func decodeProblem(status int, raw []byte) error {
	p := &Problem{}
	if err := json.Unmarshal(raw, p); err != nil || p.Status == 0 {
		return &Problem{Type: "about:blank", Status: status, Detail: strings.TrimSpace(string(raw))}
	}
	_ = json.Unmarshal(raw, &p.Raw)
	return p
}

// ListOptions pages through a list.
type ListOptions struct {
	Cursor string
	Limit  int
}

func (o ListOptions) query(extra url.Values) string {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit > 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// Page is one page of a list.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}
