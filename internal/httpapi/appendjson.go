package httpapi

import (
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/coupon/qualify"
)

// jsonAppender is an answer that writes its own JSON: byte for byte what encoding/json writes for
// it (without HTML escaping, as every answer here), without reflection. Only the largest hot
// answers are worth one; the format's Marshal takes it when the body is one.
type jsonAppender interface {
	appendJSON(dst []byte) ([]byte, error)
}

// qualifyAnswer is the answer of a qualification: a qualify.Result, written by appendJSON (a
// 20-coupon wallet's answer is 6 to 8 KB, and writing it by reflection cost a tenth of the
// route's CPU). buf, when set, is the evaluation buffer that holds the result's arrays: release
// gives it back once the answer is written.
type qualifyAnswer struct {
	qualify.Result
	buf *qualify.Buffer
}

// qualifyBuffers are the evaluation buffers of qualifications: a handler takes one, the answer
// gives it back once written, so that a busy node evaluates into memory it already has.
var qualifyBuffers = sync.Pool{New: func() any { return new(qualify.Buffer) }}

// maxPooledWallet is the largest wallet whose buffer goes back to the pool: a buffer keeps the
// memory of the largest wallet it evaluated.
const maxPooledWallet = 1000

func (a qualifyAnswer) release() {
	if a.buf != nil && len(a.Coupons) <= maxPooledWallet {
		qualifyBuffers.Put(a.buf)
	}
}

func (a qualifyAnswer) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"amount":`...)
	b = strconv.AppendInt(b, a.Amount, 10)
	b = append(b, `,"coupons":`...)
	if a.Coupons == nil {
		b = append(b, "null"...)
	} else {
		var err error
		if b, err = appendArray(b, a.Coupons, appendOutcome); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"best":{"single":`...)
	b = appendPick(b, a.Best.Single)
	b = append(b, `,"stack":`...)
	b = appendPick(b, a.Best.Stack)
	return append(b, "}}"...), nil
}

func appendOutcome(b []byte, o *qualify.Outcome) ([]byte, error) {
	b = append(b, `{"coupon_id":`...)
	b = appendJSONString(b, o.CouponID)
	b = append(b, `,"template":`...)
	b = appendJSONString(b, o.Template)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, o.Type)
	b = append(b, `,"applicable":`...)
	b = strconv.AppendBool(b, o.Applicable)
	b = append(b, `,"discount":`...)
	b = strconv.AppendInt(b, o.Discount, 10)
	if len(o.Split) > 0 {
		b = append(b, `,"split":`...)
		b, _ = appendArray(b, o.Split, appendShare)
	}
	if len(o.Reasons) > 0 {
		b = append(b, `,"reasons":`...)
		b, _ = appendArray(b, o.Reasons, appendReason)
	}
	b = append(b, `,"expires_at":`...)
	b, err := appendJSONTime(b, o.ExpiresAt)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendShare(b []byte, s *qualify.Share) ([]byte, error) {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(s.Index), 10)
	b = append(b, `,"sku":`...)
	b = appendJSONString(b, s.SKU)
	b = append(b, `,"discount":`...)
	b = strconv.AppendInt(b, s.Discount, 10)
	return append(b, '}'), nil
}

func appendReason(b []byte, r *qualify.Reason) ([]byte, error) {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, r.Code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, r.Message)
	if r.Shortfall != 0 {
		b = append(b, `,"shortfall":`...)
		b = strconv.AppendInt(b, r.Shortfall, 10)
	}
	return append(b, '}'), nil
}

// appendArray writes items as a JSON array, each with item.
func appendArray[T any](b []byte, items []T, item func([]byte, *T) ([]byte, error)) ([]byte, error) {
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = item(b, &items[i]); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func appendPick(b []byte, p *qualify.Pick) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"coupon_ids":`...)
	if p.CouponIDs == nil {
		b = append(b, "null"...)
	} else {
		b, _ = appendArray(b, p.CouponIDs, func(b []byte, id *string) ([]byte, error) {
			return appendJSONString(b, *id), nil
		})
	}
	b = append(b, `,"discount":`...)
	b = strconv.AppendInt(b, p.Discount, 10)
	return append(b, '}')
}

// appendJSONTime writes t as time.Time's MarshalJSON does, which refuses years outside 0–9999.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("httpapi: time %v has a year outside [0,9999]", t)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s quoted as encoding/json does without HTML escaping: '"' and '\\'
// and control characters escaped (\b, \f, \n, \r, \t by name, the others as \u00XX), invalid
// UTF-8 as \ufffd, and U+2028 and U+2029 (which break JavaScript) as \u2028 and \u2029.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	from := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[from:i]...)
			b = appendEscapedByte(b, c)
			i++
			from = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[from:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[from:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		from = i
	}
	b = append(b, s[from:]...)
	return append(b, '"')
}

func appendEscapedByte(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}
