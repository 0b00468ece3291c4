package qualify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
)

// Limits of a template spec.
const (
	// MaxAmount bounds every amount, cap and threshold (10^15 minor units), so that sums of
	// stacked coupons stay far from int64 overflow.
	MaxAmount int64 = 1_000_000_000_000_000
	// MaxPercentBP is 100 % in basis points.
	MaxPercentBP = 10_000
	// MaxDays is the longest validity in days from issue.
	MaxDays = 3650
	// MaxPerOrderLimit bounds Stacking.MaxPerOrder.
	MaxPerOrderLimit = 20
	// MaxRuleValues bounds the values of one include or exclude list.
	MaxRuleValues = 10_000
	// MaxValueLength bounds one include/exclude value, in characters (the length of a SKU).
	MaxValueLength = 128
	// MaxTitleRunes bounds a title, per language.
	MaxTitleRunes = 100
	// MaxDescriptionRunes bounds a description, per language.
	MaxDescriptionRunes = 2000
)

// The languages of titles, descriptions and reason messages.
const (
	LangEN = "en"
	LangZH = "zh-CN"
)

// groupPattern is the form of a stack group name.
var groupPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,47}$`)

// conditionEnv is the CEL environment of template conditions: user and cart, both maps. The cart
// is {business_line, channel, currency, amount, items: [{sku, category, brand, model, unit_price,
// quantity, amount}]}, amounts in minor units as int.
var conditionEnv = rules.MustNewEnv("coupon.condition",
	rules.Var{Name: "user", Type: rules.MapType},
	rules.Var{Name: "cart", Type: rules.MapType})

// Decode decodes and validates a coupon_template spec. Unknown fields are refused. With draft,
// missing required fields are tolerated but present ones are checked. A bad spec is a
// problem.Invalid error with one field per problem, paths like "spec.threshold.amount". It returns
// the spec with defaults filled (currency CNY, scope cart, stacking exclusive, max_per_order 1).
func Decode(raw json.RawMessage, draft bool) (Spec, error) {
	s, _, err := decode(raw, draft)
	return s, err
}

// decode is Decode that also returns the compiled condition (nil without one).
func decode(raw json.RawMessage, draft bool) (Spec, *rules.Program, error) {
	var fs problem.Fields
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		raw = json.RawMessage(`{}`)
	}
	var probe any
	if err := json.Unmarshal(raw, &probe); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			fs.Add("spec", "is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
		} else {
			fs.Add("spec", "is not valid JSON")
		}
		return Spec{}, nil, fs.Err("invalid coupon template")
	}
	if _, ok := probe.(map[string]any); !ok {
		fs.Add("spec", "must be a JSON object")
		return Spec{}, nil, fs.Err("invalid coupon template")
	}
	checkShape(&fs, "spec", raw, reflect.TypeFor[Spec]())
	if len(fs) > 0 {
		return Spec{}, nil, fs.Err("invalid coupon template")
	}
	var s Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		fs.Add("spec", "cannot be read: %s", err.Error())
		return Spec{}, nil, fs.Err("invalid coupon template")
	}
	fillDefaults(&s)
	cond := checkSpec(&fs, &s, draft)
	if err := fs.Err("invalid coupon template"); err != nil {
		return Spec{}, nil, err
	}
	return s, cond, nil
}

// fillDefaults sets the defaults of fields left empty and keeps times in UTC.
func fillDefaults(s *Spec) {
	if s.Currency == "" {
		s.Currency = DefaultCurrency
	}
	if s.Threshold.Scope == "" {
		s.Threshold.Scope = ScopeCart
	}
	if s.Stacking.Mode == "" {
		s.Stacking.Mode = StackExclusive
	}
	if s.Stacking.MaxPerOrder == 0 {
		s.Stacking.MaxPerOrder = 1
	}
	for _, p := range []**time.Time{&s.Validity.From, &s.Validity.Until} {
		if *p != nil {
			u := (*p).UTC()
			*p = &u
		}
	}
}

// checkSpec files every problem of a spec with defaults filled, and returns the compiled
// condition (nil when there is none or it does not compile).
func checkSpec(fs *problem.Fields, s *Spec, draft bool) *rules.Program {
	cur, knownCur := currencies[s.Currency]
	if !knownCur {
		fs.Add("spec.currency", "unknown currency %q; known: %s", s.Currency, knownCodes())
		cur = currencyOf(s.Currency)
	}
	checkValue(fs, s, draft)
	checkThreshold(fs, s, cur)
	checkApplicability(fs, &s.Applicability)
	checkValidity(fs, &s.Validity, draft)
	checkCounts(fs, s)
	checkStacking(fs, &s.Stacking, draft)
	checkTexts(fs, "spec.title", s.Title, MaxTitleRunes, !draft)
	checkTexts(fs, "spec.description", s.Description, MaxDescriptionRunes, false)
	return checkCondition(fs, s.Condition)
}

func checkValue(fs *problem.Fields, s *Spec, draft bool) {
	switch s.Type {
	case "":
		if !draft {
			fs.Add("spec.type", "is required: amount_off, percent_off or seller_bonus")
		}
		checkMoney(fs, "spec.amount", s.Amount, false)
		checkMoney(fs, "spec.cap", s.Cap, false)
		checkPercent(fs, s.PercentBP, false)
	case TypeAmountOff:
		checkMoney(fs, "spec.amount", s.Amount, !draft)
		if s.PercentBP != 0 {
			fs.Add("spec.percent_bp", "amount_off takes amount; a percentage goes with percent_off")
		}
		if s.Cap != 0 {
			fs.Add("spec.cap", "a cap goes with a percentage; amount_off has none")
		}
	case TypePercentOff:
		checkPercent(fs, s.PercentBP, !draft)
		checkMoney(fs, "spec.cap", s.Cap, !draft)
		if s.Amount != 0 {
			fs.Add("spec.amount", "percent_off takes percent_bp and cap, not amount")
		}
	case TypeSellerBonus:
		switch {
		case s.Amount != 0 && s.PercentBP != 0:
			fs.Add("spec.percent_bp", "a seller bonus is either a fixed amount or a percentage, not both")
		case s.Amount == 0 && s.PercentBP == 0 && !draft:
			fs.Add("spec.amount", "is required: a fixed bonus amount, or percent_bp with a cap")
		}
		if s.Amount != 0 {
			checkMoney(fs, "spec.amount", s.Amount, true)
			if s.Cap != 0 && s.PercentBP == 0 {
				fs.Add("spec.cap", "a cap goes with a percentage; a fixed bonus has none")
			}
		}
		if s.PercentBP != 0 {
			checkPercent(fs, s.PercentBP, true)
			checkMoney(fs, "spec.cap", s.Cap, !draft)
		}
	default:
		fs.Add("spec.type", "unknown type %q: amount_off, percent_off or seller_bonus", s.Type)
	}
}

// checkMoney checks an amount that must be positive; 0 is "missing".
func checkMoney(fs *problem.Fields, path string, v int64, required bool) {
	switch {
	case v < 0:
		fs.Add(path, "must be positive, got %d", v)
	case v == 0 && required:
		fs.Add(path, "is required and must be positive")
	case v > MaxAmount:
		fs.Add(path, "must be at most %d minor units", MaxAmount)
	}
}

func checkPercent(fs *problem.Fields, bp int64, required bool) {
	switch {
	case bp == 0 && required:
		fs.Add("spec.percent_bp", "is required: 1 to %d basis points (100 = 1 %%)", MaxPercentBP)
	case bp < 0 || bp > MaxPercentBP:
		fs.Add("spec.percent_bp", "must be between 1 and %d basis points (100 = 1 %%), got %d", MaxPercentBP, bp)
	}
}

func checkThreshold(fs *problem.Fields, s *Spec, cur *currency) {
	th := s.Threshold
	switch {
	case th.Amount < 0:
		fs.Add("spec.threshold.amount", "must be 0 (no threshold) or positive, got %d", th.Amount)
	case th.Amount > MaxAmount:
		fs.Add("spec.threshold.amount", "must be at most %d minor units", MaxAmount)
	case s.Type == TypeAmountOff && th.Amount > 0 && s.Amount > 0 && th.Amount < s.Amount:
		fs.Add("spec.threshold.amount", "the threshold %s is below the discount %s; use 0 for no threshold",
			appendMoney(nil, cur, th.Amount), appendMoney(nil, cur, s.Amount))
	}
	if th.Scope != ScopeCart && th.Scope != ScopeApplicable {
		fs.Add("spec.threshold.scope", "must be %q or %q, got %q", ScopeCart, ScopeApplicable, th.Scope)
	}
}

func checkApplicability(fs *problem.Fields, a *Applicability) {
	for d := range numDims {
		checkRule(fs, "spec.applicability."+dimNames[d], a.rule(d))
	}
}

func checkRule(fs *problem.Fields, path string, r *Rule) {
	inc := checkValues(fs, path+".include", r.Include)
	checkValues(fs, path+".exclude", r.Exclude)
	for i, v := range r.Exclude {
		if _, both := inc[v]; both && v != "" {
			fs.Add(fmt.Sprintf("%s.exclude[%d]", path, i), "%q is also included", v)
		}
	}
}

// checkValues checks one include or exclude list and returns its values.
func checkValues(fs *problem.Fields, path string, vs []string) map[string]int {
	if len(vs) > MaxRuleValues {
		fs.Add(path, "at most %d values, got %d", MaxRuleValues, len(vs))
		return nil
	}
	seen := make(map[string]int, len(vs))
	for i, v := range vs {
		at := fmt.Sprintf("%s[%d]", path, i)
		switch first, dup := seen[v]; {
		case strings.TrimSpace(v) == "":
			fs.Add(at, "must not be empty")
		case strings.TrimSpace(v) != v:
			fs.Add(at, "must not start or end with spaces")
		case tooLong(v, MaxValueLength):
			fs.Add(at, "must be at most %d characters", MaxValueLength)
		case dup:
			fs.Add(at, "%q is listed twice (first at [%d])", v, first)
		default:
			seen[v] = i
		}
	}
	return seen
}

func checkValidity(fs *problem.Fields, v *Validity, draft bool) {
	window := v.From != nil || v.Until != nil
	switch {
	case window && v.Days != 0:
		fs.Add("spec.validity.days", "use either a window (from, until) or days from issue, not both")
	case v.Days != 0:
		if v.Days < 1 || v.Days > MaxDays {
			fs.Add("spec.validity.days", "must be between 1 and %d, got %d", MaxDays, v.Days)
		}
	case window:
		if v.From == nil && !draft {
			fs.Add("spec.validity.from", "is required with until")
		}
		if v.Until == nil && !draft {
			fs.Add("spec.validity.until", "is required with from")
		}
		if v.From != nil && v.Until != nil && !v.From.Before(*v.Until) {
			fs.Add("spec.validity.until", "must be after from")
		}
	case !draft:
		fs.Add("spec.validity", "is required: a window (from, until) or days from issue")
	}
}

func checkCounts(fs *problem.Fields, s *Spec) {
	if s.Quantity < 0 {
		fs.Add("spec.quantity", "must be 0 (unlimited) or positive, got %d", s.Quantity)
	}
	switch {
	case s.PerUser < 0:
		fs.Add("spec.per_user", "must be 0 (unlimited) or positive, got %d", s.PerUser)
	case s.Quantity > 0 && s.PerUser > s.Quantity:
		fs.Add("spec.per_user", "must be at most the quantity (%d), got %d", s.Quantity, s.PerUser)
	}
}

func checkStacking(fs *problem.Fields, st *Stacking, draft bool) {
	switch st.Mode {
	case StackExclusive:
		if st.Group != "" {
			fs.Add("spec.stacking.group", "only group coupons have a group; set mode to %q", StackGroup)
		}
		if st.MaxPerOrder > 1 {
			fs.Add("spec.stacking.max_per_order", "an exclusive coupon is used alone; set mode to %q to stack", StackGroup)
		}
	case StackGroup:
		switch {
		case st.Group == "" && !draft:
			fs.Add("spec.stacking.group", "is required with mode %q", StackGroup)
		case st.Group != "" && !groupPattern.MatchString(st.Group):
			fs.Add("spec.stacking.group", "must be a slug: a-z first, then up to 47 of a-z 0-9 _ -")
		}
	default:
		fs.Add("spec.stacking.mode", "must be %q or %q, got %q", StackExclusive, StackGroup, st.Mode)
	}
	if st.MaxPerOrder < 1 || st.MaxPerOrder > MaxPerOrderLimit {
		fs.Add("spec.stacking.max_per_order", "must be between 1 and %d, got %d", MaxPerOrderLimit, st.MaxPerOrder)
	}
}

func checkTexts(fs *problem.Fields, path string, texts map[string]string, maxRunes int, required bool) {
	if len(texts) == 0 {
		if required {
			fs.Add(path, "is required, in %s, %s or both", LangZH, LangEN)
		}
		return
	}
	for _, lang := range sortedKeys(texts) {
		text, at := texts[lang], path+"."+lang
		switch {
		case lang != LangZH && lang != LangEN:
			fs.Add(at, "unsupported language; use %s or %s", LangZH, LangEN)
		case strings.TrimSpace(text) == "":
			fs.Add(at, "must not be empty")
		case utf8.RuneCountInString(text) > maxRunes:
			fs.Add(at, "must be at most %d characters", maxRunes)
		}
	}
}

func checkCondition(fs *problem.Fields, cond string) *rules.Program {
	if strings.TrimSpace(cond) == "" {
		if cond != "" {
			fs.Add("spec.condition", "must not be blank; leave it out for no condition")
		}
		return nil
	}
	prog, err := conditionEnv.Compile(cond, rules.BoolType)
	if err != nil {
		fs.Add("spec.condition", "%s", err.Error())
		return nil
	}
	return prog
}

// timeType is time.Time, which JSON reads from an RFC 3339 string.
var timeType = reflect.TypeFor[time.Time]()

// checkShape compares raw JSON with the Go type it decodes into: unknown fields and values of the
// wrong JSON type are filed at their path, all of them, before anything is decoded.
func checkShape(fs *problem.Fields, path string, raw json.RawMessage, t reflect.Type) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	if t == timeType {
		var tm time.Time
		if raw[0] != '"' || json.Unmarshal(raw, &tm) != nil {
			fs.Add(path, "must be an RFC 3339 time, e.g. \"2026-06-01T00:00:00+08:00\"")
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(fs, path, raw, t.Elem())
	case reflect.Struct:
		obj, ok := object(raw)
		if !ok {
			fs.Add(path, "must be an object")
			return
		}
		known := structFields(t)
		for _, k := range sortedKeys(obj) {
			ft, ok := known[k]
			if !ok {
				fs.Add(path+"."+k, "unknown field")
				continue
			}
			checkShape(fs, path+"."+k, obj[k], ft)
		}
	case reflect.Map:
		obj, ok := object(raw)
		if !ok {
			fs.Add(path, "must be an object")
			return
		}
		for _, k := range sortedKeys(obj) {
			checkShape(fs, path+"."+k, obj[k], t.Elem())
		}
	case reflect.Slice:
		var arr []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &arr) != nil {
			fs.Add(path, "must be an array")
			return
		}
		for i, e := range arr {
			checkShape(fs, fmt.Sprintf("%s[%d]", path, i), e, t.Elem())
		}
	case reflect.String:
		if raw[0] != '"' {
			fs.Add(path, "must be a string")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(string(raw), 10, t.Bits()); err != nil {
			if errors.Is(err, strconv.ErrRange) {
				fs.Add(path, "is out of range")
			} else {
				fs.Add(path, "must be an integer")
			}
		}
	case reflect.Bool:
		if string(raw) != "true" && string(raw) != "false" {
			fs.Add(path, "must be true or false")
		}
	}
}

func object(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return nil, false
	}
	return obj, true
}

// structFields maps the JSON names of a struct's exported fields to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
