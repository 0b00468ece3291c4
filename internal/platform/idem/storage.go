package idem

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// RecordKey names one record: the client's key within a tenant and a scope.
type RecordKey struct {
	Tenant string
	Scope  string
	Key    string
}

// Claim is one caller's attempt at a key: its payload fingerprint and a random token that
// proves, on Complete and Abandon, that the in-flight claim is still this caller's.
type Claim struct {
	RecordKey
	Fingerprint string
	Token       string
}

// State is a record's state.
type State string

// The record states.
const (
	StateInFlight  State = "in_flight"
	StateCompleted State = "completed"
)

// Record is what a Storage holds for a key.
type Record struct {
	State       State
	Fingerprint string
	// Response is set when State is StateCompleted.
	Response Response
}

// ErrClaimLost means the claim's token no longer holds the key: its lease expired and another
// caller claimed it, or it was completed or abandoned already.
var ErrClaimLost = errors.New("idem: claim no longer held")

// Storage keeps idempotency records. Implementations are safe for concurrent use and atomic per
// key across processes.
type Storage interface {
	// Begin claims c's key as in flight for lease, atomically, unless a live record holds it; then
	// it returns that record and claimed = false. A record is live until its expiry: lease for an
	// in-flight claim (so a crashed caller does not block the key for long), ttl for a completed one.
	Begin(ctx context.Context, c Claim, lease time.Duration) (rec Record, claimed bool, err error)
	// Complete stores resp for c's key, kept for ttl, if c still holds the claim; else ErrClaimLost.
	Complete(ctx context.Context, c Claim, resp Response, ttl time.Duration) error
	// Abandon deletes c's in-flight claim, if c still holds it (else ErrClaimLost), so that the
	// key may be tried again.
	Abandon(ctx context.Context, c Claim) error
}

// encodeHeader and decodeHeader store headers as JSON text.
func encodeHeader(h http.Header) (string, error) {
	if len(h) == 0 {
		return "", nil
	}
	b, err := json.Marshal(h)
	return string(b), err
}

func decodeHeader(s string) (http.Header, error) {
	h := http.Header{}
	if s == "" {
		return h, nil
	}
	err := json.Unmarshal([]byte(s), &h)
	return h, err
}

// emptyNil returns nil for an empty body, so that every storage answers alike.
func emptyNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
