// Package idem is perk's idempotency component, following the IETF Idempotency-Key draft. A
// request carries a key (the Idempotency-Key header, or a CEL expression over the request chosen
// by configuration); the first request with a key runs and its response is stored; a retry with
// the same key and the same payload gets the stored response again (or a "duplicate" error, or a
// failure, per the operation's Policy); the same key with another payload is refused (422), and a
// retry while the first is still running is refused (409).
//
// Keys are scoped by tenant and by scope (the credential), so two merchants' keys never collide.
// Records live in a Storage (Redis or SQL) and expire after a TTL (24h by default). Service is the
// Go API, used by bus consumers and jobs as well as by the HTTP Middleware.
package idem

import (
	"net/http"
	"time"
)

// Policy says what a completed key answers when it comes again with the same payload.
type Policy string

// The policies.
const (
	// PolicyReplay answers the stored status, headers and body again, marked as a replay.
	PolicyReplay Policy = "replay"
	// PolicyDuplicate answers a stable 409 problem "duplicate-request" with the original status.
	PolicyDuplicate Policy = "duplicate"
	// PolicyFail answers a 409 problem "idempotency-key-used".
	PolicyFail Policy = "fail"
)

// Valid reports whether p is a known policy ("" counts: it means PolicyReplay).
func (p Policy) Valid() bool {
	switch p {
	case "", PolicyReplay, PolicyDuplicate, PolicyFail:
		return true
	}
	return false
}

// Storage names accepted in OperationConfig.Storage and ServiceOptions.Storages.
const (
	StorageRedis = "redis"
	StorageSQL   = "sql"
)

// OperationConfig is how one operation of one tenant handles idempotency.
type OperationConfig struct {
	// Required refuses requests without a key (400).
	Required bool
	// KeyExpr, when set, is a CEL expression over `request` that yields the key; the header is
	// then ignored. See CheckKeyExpr.
	KeyExpr string
	// Policy applies to a completed key that comes again ("" = PolicyReplay).
	Policy Policy
	// Storage names the storage ("redis", "sql"; "" = the service's default).
	Storage string
	// TTL is how long a completed record is kept (0 = the service's default, 24h).
	TTL time.Duration
}

// OperationSource tells the configuration of an operation. The config center implements it so
// that policy, key source and storage can change at run time; it must be fast (called per request).
type OperationSource interface {
	Operation(tenant, operation string) OperationConfig
}

// StaticSource is a fixed OperationSource: Operations by name, else Default.
type StaticSource struct {
	Default    OperationConfig
	Operations map[string]OperationConfig
}

// Operation implements OperationSource.
func (s StaticSource) Operation(_, operation string) OperationConfig {
	if c, ok := s.Operations[operation]; ok {
		return c
	}
	return s.Default
}

// Response is what an idempotent call answered. Only the headers the Service keeps are stored.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Call identifies one idempotent call.
type Call struct {
	// Tenant and Scope (the credential id) scope the key.
	Tenant string
	Scope  string
	// Operation names what is being done (e.g. "coupons.issue"); it selects the OperationConfig
	// and is part of the fingerprint, so one key cannot be reused for another operation.
	Operation string
	// Key is the client's idempotency key ("" = none).
	Key string
	// Fingerprint identifies the payload; the same key with another fingerprint is refused.
	Fingerprint []byte
}

// Outcome says how a call was answered.
type Outcome string

// The outcomes. The metric perk_idem_outcomes_total counts them by operation.
const (
	OutcomeNone      Outcome = "none"      // no key and none required: fn ran unmanaged
	OutcomeFresh     Outcome = "fresh"     // first call with this key: fn ran, its response is stored
	OutcomeAbandoned Outcome = "abandoned" // fn failed (error, 5xx, panic): nothing is stored
	OutcomeReplayed  Outcome = "replayed"  // the stored response is answered again
	OutcomeMismatch  Outcome = "mismatch"  // same key, other payload (422)
	OutcomeInFlight  Outcome = "in_flight" // same key while the first call runs (409)
	OutcomeDuplicate Outcome = "duplicate" // PolicyDuplicate refused a completed key (409)
	OutcomeKeyUsed   Outcome = "key_used"  // PolicyFail refused a completed key (409)
	OutcomeMissing   Outcome = "missing"   // no key where one is required (400)
	OutcomeBadKey    Outcome = "bad_key"   // the key is malformed (400)
	OutcomeError     Outcome = "error"     // storage or configuration failure
)

// Problem codes (the last segment of the problem type URI).
const (
	CodeKeyMissing  = "idempotency-key-missing"
	CodeKeyInvalid  = "idempotency-key-invalid"
	CodeKeyMismatch = "idempotency-key-mismatch"
	CodeInFlight    = "request-in-flight"
	CodeDuplicate   = "duplicate-request"
	CodeKeyUsed     = "idempotency-key-used"
	CodeUnavailable = "idempotency-unavailable"
	CodeBodyTooBig  = "body-too-large"
)

// MaxKeyLength is the longest key accepted.
const MaxKeyLength = 255
