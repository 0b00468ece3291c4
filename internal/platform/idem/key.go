package idem

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"github.com/dunglas/httpsfv"

	"github.com/perkhq/perk/internal/platform/problem"
)

// KeyHeader is the request header that carries the key.
const KeyHeader = "Idempotency-Key"

// ReplayedHeader marks a replayed response.
const ReplayedHeader = "Idempotent-Replayed"

// ParseKeyHeader reads an Idempotency-Key header value: an RFC 8941 Structured Field String
// (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`; parameters are ignored). For leniency an unquoted
// value of visible ASCII without quotes, backslashes, commas, semicolons or spaces is accepted as
// is. Empty keys and keys over MaxKeyLength are refused with a bad-request problem.
func ParseKeyHeader(v string) (string, error) {
	v = strings.TrimSpace(v)
	key, ok := "", false
	if item, err := httpsfv.UnmarshalItem([]string{v}); err == nil {
		switch x := item.Value.(type) {
		case string:
			key, ok = x, true
		case httpsfv.Token:
			key, ok = string(x), len(item.Params.Names()) == 0
		}
	}
	if !ok && bareKey(v) {
		key, ok = v, true
	}
	switch {
	case !ok:
		return "", badKey("the %s header must be a quoted string, e.g. %s: \"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
			KeyHeader, KeyHeader)
	case key == "":
		return "", badKey("the %s header is empty", KeyHeader)
	case len(key) > MaxKeyLength:
		return "", badKey("the idempotency key is longer than %d characters", MaxKeyLength)
	}
	return key, nil
}

// bareKey reports whether v is a plausible unquoted key.
func bareKey(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"\,;`, c) >= 0 {
			return false
		}
	}
	return true
}

func badKey(format string, args ...any) error {
	return problem.New(problem.KindBadRequest, format, args...).WithCode(CodeKeyInvalid)
}

// keyCostLimit bounds one evaluation of a key expression.
const keyCostLimit = 100_000

// keyExprs compiles key expressions once and keeps the programs by expression text. The CEL
// environment is deliberately tiny and local; the lead may swap it for the rules package.
type keyExprs struct {
	env   *cel.Env
	mu    sync.RWMutex
	progs map[string]cel.Program
}

func newKeyExprs() (*keyExprs, error) {
	env, err := cel.NewEnv(cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		return nil, err
	}
	return &keyExprs{env: env, progs: map[string]cel.Program{}}, nil
}

var checkEnv struct {
	once sync.Once
	ke   *keyExprs
	err  error
}

// CheckKeyExpr compiles expr as a key expression and reports why it is unusable, for the config
// center to call at publish time. The expression sees `request`, a map with method, path,
// headers (lower-cased names, first value), query (first value per name) and body (the decoded
// JSON body, or null), and must yield a string or a number.
func CheckKeyExpr(expr string) error {
	checkEnv.once.Do(func() { checkEnv.ke, checkEnv.err = newKeyExprs() })
	if checkEnv.err != nil {
		return checkEnv.err
	}
	_, err := checkEnv.ke.compile(expr)
	return err
}

func (k *keyExprs) program(expr string) (cel.Program, error) {
	k.mu.RLock()
	prg, ok := k.progs[expr]
	k.mu.RUnlock()
	if ok {
		return prg, nil
	}
	prg, err := k.compile(expr)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.progs[expr] = prg
	k.mu.Unlock()
	return prg, nil
}

func (k *keyExprs) compile(expr string) (cel.Program, error) {
	ast, iss := k.env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("idem: key expression %q: %w", expr, iss.Err())
	}
	switch ast.OutputType().Kind() {
	case types.StringKind, types.IntKind, types.UintKind, types.DoubleKind, types.DynKind:
	default:
		return nil, fmt.Errorf("idem: key expression %q yields %s, not a string", expr, ast.OutputType())
	}
	return k.env.Program(ast, cel.CostLimit(keyCostLimit))
}

// eval runs expr over the request and returns the key ("" when the expression finds none).
func (k *keyExprs) eval(expr string, r *http.Request, body []byte) (string, error) {
	prg, err := k.program(expr)
	if err != nil {
		return "", err
	}
	out, _, err := prg.Eval(map[string]any{"request": requestVars(r, body)})
	if err != nil {
		return "", nil // e.g. a missing body field: the request has no key
	}
	switch v := out.Value().(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10), nil
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	}
	return "", nil
}

// requestVars is the `request` variable of key expressions.
func requestVars(r *http.Request, body []byte) map[string]any {
	headers := make(map[string]any, len(r.Header))
	for name, vs := range r.Header {
		if len(vs) > 0 {
			headers[strings.ToLower(name)] = vs[0]
		}
	}
	query := map[string]any{}
	for name, vs := range r.URL.Query() {
		if len(vs) > 0 {
			query[name] = vs[0]
		}
	}
	return map[string]any{
		"method":  r.Method,
		"path":    r.URL.Path,
		"headers": headers,
		"query":   query,
		"body":    decodeBody(body),
	}
}

// decodeBody decodes a JSON body, keeping integers exact (int64) where they fit; nil otherwise.
func decodeBody(body []byte) any {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return numbers(v)
}

// numbers turns json.Number into int64 or float64, recursively.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}
