package qualify

import (
	"encoding/json"
	"hash/maphash"
	"slices"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
)

// dim is an applicability dimension; the cart-level ones come first, then the item-level ones in
// the order reasons name them.
type dim int

const (
	dimBusinessLine dim = iota
	dimChannel
	dimCategory
	dimBrand
	dimModel
	dimSKU
	numDims
	firstItemDim = dimCategory
)

var (
	dimNames   = [numDims]string{"business_line", "channel", "category", "brand", "model", "sku"}
	dimReasons = [numDims]string{ReasonBusinessLine, ReasonChannel, ReasonCategory, ReasonBrand, ReasonModel, ReasonSKU}
)

// rule is the Rule of one dimension.
func (a *Applicability) rule(d dim) *Rule {
	switch d {
	case dimBusinessLine:
		return &a.BusinessLine
	case dimChannel:
		return &a.Channel
	case dimCategory:
		return &a.Category
	case dimBrand:
		return &a.Brand
	case dimModel:
		return &a.Model
	}
	return &a.SKU
}

// cartValue is the cart's value of a cart-level dimension.
func cartValue(c *Cart, d dim) string {
	if d == dimBusinessLine {
		return c.BusinessLine
	}
	return c.Channel
}

// itemValue is an item's value of an item-level dimension.
func itemValue(it *Item, d dim) string {
	switch d {
	case dimCategory:
		return it.Category
	case dimBrand:
		return it.Brand
	case dimModel:
		return it.Model
	}
	return it.SKU
}

// matcher is a compiled Rule: sorted include and exclude lists, and their values' hashes (see
// hashes), so that a value is usually found absent without comparing strings.
type matcher struct {
	// ibits and ebits have the bit hashBit of each hash of ih and eh: a value whose bit is not
	// set is absent without reading the lists.
	ibits, ebits uint64
	// The fields that eligibleItems reads come first, in a dimRule's first cache line.
	ih  []uint64
	inc []string
	eh  []uint64
	exc []string
}

func newMatcher(r Rule) matcher {
	m := matcher{inc: sortedSet(r.Include), exc: sortedSet(r.Exclude)}
	m.ih, m.eh = hashes(m.inc), hashes(m.exc)
	for _, h := range m.ih {
		m.ibits |= hashBit(h)
	}
	for _, h := range m.eh {
		m.ebits |= hashBit(h)
	}
	return m
}

// hashBit is one of 64 bits picked by a hash.
func hashBit(h uint64) uint64 { return 1 << (h >> 58) }

// hashSeed seeds the hashes of the values: templates live in the process that compiled them.
var hashSeed = maphash.MakeSeed()

func hashOf(v string) uint64 { return maphash.String(hashSeed, v) }

// versionHash is the hash of a template version whose key hashes to h.
func versionHash(h uint64, version int) uint64 { return h ^ uint64(version)*0x9e3779b97f4a7c15 }

// hashes returns the hashes of vs (nil when empty): in the order of vs for a short list (see
// holds), sorted for a longer one.
func hashes(vs []string) []uint64 {
	if len(vs) == 0 {
		return nil
	}
	hs := make([]uint64, len(vs))
	for i, v := range vs {
		hs[i] = hashOf(v)
	}
	if len(hs) > shortList {
		slices.Sort(hs)
	}
	return hs
}

// shortList is the longest list whose hashes are kept in the list's order and scanned.
const shortList = 16

// holds reports whether the sorted list vs, whose hashes are hs (see hashes), holds v, whose hash
// is h. In a short list only the values of the same hash are compared.
func holds(vs []string, hs []uint64, v string, h uint64) bool {
	if len(hs) <= shortList {
		for k, x := range hs {
			if x == h && vs[k] == v {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearch(hs, h)
	return ok && has(vs, v)
}

// admitsHashed is admits for a value whose hash (hashOf) is h.
func (m *matcher) admitsHashed(v string, h uint64) bool {
	bit := hashBit(h)
	if m.ebits&bit != 0 && m.excludes(v, h) {
		return false
	}
	return len(m.inc) == 0 || (m.ibits&bit != 0 && m.includes(v, h))
}

// includes reports whether the include list holds v, whose hash is h.
func (m *matcher) includes(v string, h uint64) bool { return holds(m.inc, m.ih, v, h) }

// excludes reports whether the exclude list holds v, whose hash is h.
func (m *matcher) excludes(v string, h uint64) bool { return holds(m.exc, m.eh, v, h) }

// sortedSet returns vs sorted, sharing it when it already is.
func sortedSet(vs []string) []string {
	if len(vs) == 0 {
		return nil
	}
	if slices.IsSorted(vs) {
		return vs
	}
	c := slices.Clone(vs)
	slices.Sort(c)
	return c
}

// admits reports whether the rule lets v through: an empty include admits every value, and
// exclude wins.
func (m *matcher) admits(v string) bool {
	if len(m.exc) > 0 && has(m.exc, v) {
		return false
	}
	return len(m.inc) == 0 || has(m.inc, v)
}

func (m *matcher) empty() bool { return len(m.inc) == 0 && len(m.exc) == 0 }

func has(sorted []string, v string) bool {
	if len(sorted) <= 8 {
		return slices.Contains(sorted, v)
	}
	_, ok := slices.BinarySearch(sorted, v)
	return ok
}

// Template is a validated, compiled template version. It is immutable and safe to share.
type Template struct {
	// terms are what qualification reads, first and together, so that evaluating a coupon
	// touches the fewest cache lines.
	terms
	Key     string
	Version int
	Spec    Spec
}

// terms is the compiled state of a template.
type terms struct {
	// hash and keyHash are where an evaluation's tables of templates and of keys start looking
	// for it; groupHash is the hash of its stack group.
	hash, keyHash, groupHash uint64
	// rules are the compiled rules of the dimensions that have one, in dimension order; none when
	// the template applies to every cart and item.
	rules []dimRule
	cond  *rules.Program
	cur   *currency
	// amount, bp, cap and threshold are the spec's Amount, PercentBP, Cap and Threshold.Amount.
	amount, bp, cap, threshold int64
	// group and limit are the spec's stack group and max_per_order.
	group string
	limit int32
	kind  int8
	excl  bool
	// scopeApplicable: the threshold counts the eligible items only.
	scopeApplicable bool
	// cartRules is how many of rules are cart-level (they come first).
	cartRules int8
}

// The kinds, in the order a stack applies them.
const (
	kindPercentOff int8 = iota
	kindAmountOff
	kindSellerBonus
)

// kindTypes are the types of the kinds: a valid spec's Type, so that an outcome's Type is had
// without reading the spec.
var kindTypes = [...]string{
	kindPercentOff:  TypePercentOff,
	kindAmountOff:   TypeAmountOff,
	kindSellerBonus: TypeSellerBonus,
}

// Compile compiles a valid spec (CEL condition included) into a Template. The spec is checked
// again (defaults filled); a spec that Decode would refuse is refused the same way. The template
// keeps the spec's slices and maps: do not change them afterwards.
func Compile(key string, version int, spec Spec) (*Template, error) {
	var fs problem.Fields
	checkIdentity(&fs, key, version)
	fillDefaults(&spec)
	cond := checkSpec(&fs, &spec, false)
	if err := fs.Err("invalid coupon template"); err != nil {
		return nil, err
	}
	return build(key, version, spec, cond), nil
}

// DecodeTemplate is Decode then Compile of a published spec, checking it (and compiling its
// condition) once.
func DecodeTemplate(key string, version int, raw json.RawMessage) (*Template, error) {
	var fs problem.Fields
	if checkIdentity(&fs, key, version); len(fs) > 0 {
		return nil, fs.Err("invalid coupon template")
	}
	spec, cond, err := decode(raw, false)
	if err != nil {
		return nil, err
	}
	return build(key, version, spec, cond), nil
}

// checkIdentity checks a template's key and version.
func checkIdentity(fs *problem.Fields, key string, version int) {
	if key == "" {
		fs.Add("key", "is required")
	}
	if version < 0 {
		fs.Add("version", "must not be negative")
	}
}

// build makes the Template of a checked spec and its compiled condition.
func build(key string, version int, spec Spec, cond *rules.Program) *Template {
	t := &Template{Key: key, Version: version, Spec: spec, terms: terms{
		cur: currencies[spec.Currency], cond: cond,
		excl: spec.Stacking.Mode != StackGroup, scopeApplicable: spec.Threshold.Scope == ScopeApplicable,
		amount: spec.Amount, bp: spec.PercentBP, cap: spec.Cap, threshold: spec.Threshold.Amount,
		group: spec.Stacking.Group, limit: int32(spec.Stacking.MaxPerOrder),
		hash: versionHash(hashOf(key), version), keyHash: hashOf(key),
		groupHash: hashOf(spec.Stacking.Group),
	}}
	switch spec.Type {
	case TypeAmountOff:
		t.kind = kindAmountOff
	case TypePercentOff:
		t.kind = kindPercentOff
	default:
		t.kind = kindSellerBonus
	}
	n := 0
	for d := range numDims {
		if r := spec.Applicability.rule(d); len(r.Include)+len(r.Exclude) > 0 {
			n++
		}
	}
	if n > 0 {
		t.rules = make([]dimRule, 0, n)
	}
	for d := range numDims {
		if m := newMatcher(*spec.Applicability.rule(d)); !m.empty() {
			t.rules = append(t.rules, dimRule{matcher: m, d: d})
			if d < firstItemDim {
				t.cartRules++
			}
		}
	}
	return t
}

// Window is the validity of a coupon of this template issued at issuedAt: the fixed window, or
// issuedAt to issuedAt + Days×24h.
func (t *Template) Window(issuedAt time.Time) (startsAt, expiresAt time.Time) {
	v := t.Spec.Validity
	if v.Days > 0 {
		return issuedAt, issuedAt.Add(time.Duration(v.Days) * 24 * time.Hour)
	}
	if v.From != nil {
		startsAt = *v.From
	}
	if v.Until != nil {
		expiresAt = *v.Until
	}
	return startsAt, expiresAt
}

// exclusive reports whether coupons of the template are used alone.
func (t *Template) exclusive() bool { return t.excl }

// dimRule is the compiled rule of one dimension.
type dimRule struct {
	d dim
	matcher
}

// itemRules reports whether an item-level dimension has a rule.
func (t *Template) itemRules() bool { return len(t.rules) > int(t.cartRules) }

// admitsCart reports whether the cart-level rules admit the cart; when not, the failing dimension.
func (t *Template) admitsCart(c *Cart) (dim, bool) {
	for i := range t.rules[:t.cartRules] {
		if r := &t.rules[i]; !r.admits(cartValue(c, r.d)) {
			return r.d, false
		}
	}
	return 0, true
}

// admitsItem returns -1 when every item-level rule admits the item, else the first failing
// dimension.
func (t *Template) admitsItem(it *Item) dim {
	for i := range t.rules[t.cartRules:] {
		if r := &t.rules[int(t.cartRules)+i]; !r.admits(itemValue(it, r.d)) {
			return r.d
		}
	}
	return -1
}

// rule returns the compiled rule of dimension d, nil when it has none.
func (t *Template) rule(d dim) *matcher {
	for i := range t.rules {
		if t.rules[i].d == d {
			return &t.rules[i].matcher
		}
	}
	return nil
}

// value is the template's value on an eligible amount: the amount off (at most the amount), the
// percentage off (floor, at most the cap), or the seller bonus.
func (t *Template) value(base int64) int64 {
	switch {
	case t.kind == kindAmountOff:
		return min(t.amount, base)
	case t.bp > 0: // percent off, percentage seller bonus
		return min(percentOf(base, t.bp), t.cap)
	}
	return t.amount
}

// percentOf is floor(x × bp / 10000) without overflow, for 0 <= x and 0 <= bp <= 10000.
func percentOf(x, bp int64) int64 {
	return x/MaxPercentBP*bp + x%MaxPercentBP*bp/MaxPercentBP
}
