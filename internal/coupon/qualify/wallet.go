package qualify

// Wallet is a user's coupons prepared for evaluation: the template of each coupon looked up once,
// the coupons numbered by template version, their stack groups and template keys numbered, their
// start and expiry times held as numbers, and the templates' item rules indexed by the values they
// name, so that evaluating the same wallet against cart after cart (a node's wallet cache) neither
// looks templates up nor hashes or compares strings and times again, and finds each template's
// eligible items from one look-up per cart value. It costs about 130 bytes per coupon of a 200-coupon
// wallet, 180 of a 20-coupon one, beside the coupons (BenchmarkWalletMemory). A Wallet is
// immutable and safe for concurrent use.
type Wallet struct {
	coupons []Coupon
	times   []couponTime
	// group is each coupon's index in templates, which holds one template version per index (nil:
	// the version was not found); groupID and keyID number each version's stack group and template
	// key from 0 (groups and keys of them).
	group          []int32
	templates      []*Template
	groupID, keyID []int32
	groups, keys   int
	// items indexes the versions' item rules, from slot ruleAt[version] on; nil when none has one.
	items    *itemIndex
	ruleAt   []int32
	complete bool
}

// NewWallet prepares coupons, looking their templates up with lookup (nil: none is found). The
// wallet keeps coupons: do not change them afterwards.
func NewWallet(coupons []Coupon, lookup Lookup) *Wallet {
	w := &Wallet{coupons: coupons, group: make([]int32, len(coupons)), complete: true,
		times: timesOf(make([]couponTime, len(coupons)), coupons)}
	type version struct {
		key     string
		version int
	}
	index := make(map[version]int32, len(coupons))
	groups, keys := map[string]int32{}, map[string]int32{}
	var items indexBuilder
	for i := range coupons {
		v := version{coupons[i].TemplateKey, coupons[i].TemplateVersion}
		g, ok := index[v]
		if !ok {
			t := find(lookup, v.key, v.version)
			w.complete = w.complete && t != nil
			g = int32(len(w.templates))
			w.templates = append(w.templates, t)
			var gid, kid, at int32
			if t != nil {
				gid, kid = number(groups, t.group), number(keys, t.Key)
				at = -1
				if t.itemRules() {
					at = items.add(t)
				}
			}
			w.groupID, w.keyID, w.ruleAt = append(w.groupID, gid), append(w.keyID, kid), append(w.ruleAt, at)
			index[v] = g
		}
		w.group[i] = g
	}
	w.groups, w.keys, w.items = len(groups), len(keys), items.build()
	return w
}

// number returns the number of name in names, numbering it next when it is new.
func number(names map[string]int32, name string) int32 {
	n, ok := names[name]
	if !ok {
		n = int32(len(names))
		names[name] = n
	}
	return n
}

// find looks a template version up (nil: lookup is nil or does not find it).
func find(lookup Lookup, key string, version int) *Template {
	if lookup == nil {
		return nil
	}
	if t, ok := lookup(key, version); ok {
		return t
	}
	return nil
}

// Coupons are the wallet's coupons, in the order given.
func (w *Wallet) Coupons() []Coupon { return w.coupons }

// Complete reports whether the template of every coupon was found. A wallet prepared while a
// template version was missing answers "template missing" for its coupons for as long as it is
// kept, so a cache should prepare such a wallet again rather than keep it.
func (w *Wallet) Complete() bool { return w.complete }

// templateIn returns the index of the evaluation of the template of the wallet's coupon i, -1 when
// it is missing; each template version is met once per evaluation (versions holds, per version, 2
// + that index, or 0 before it is met). Its stack group and key take the wallet's numbers.
func (e *evaluator) templateIn(w *Wallet, i int) int32 {
	g := w.group[i]
	if ti := e.versions[g]; ti != 0 {
		return ti - 2
	}
	ti := int32(-1)
	if t := w.templates[g]; t != nil {
		ti = e.newTemplate(t, w.ruleAt[g])
		te := &e.tevals[ti]
		te.group, te.key = w.groupID[g], w.keyID[g]
	}
	e.versions[g] = ti + 2
	return ti
}

// couponTime is a coupon's start and expiry as numbers that compare as the times do: a coupon
// without a start starts before any time, one without an expiry never expires.
type couponTime struct {
	start, exp expiry
}

// timesOf writes into out the times of coupons and returns it.
func timesOf(out []couponTime, coupons []Coupon) []couponTime {
	for i := range coupons {
		c := &coupons[i]
		out[i] = couponTime{start: startOf(c.StartsAt), exp: expiryOf(c.ExpiresAt)}
	}
	return out
}
