package qualify

// Wallet is a user's coupons prepared for evaluation: the template of each coupon looked up once,
// and the coupons numbered by template version, so that evaluating the same wallet against cart
// after cart (a node's wallet cache) neither looks templates up nor hashes template keys again.
// A Wallet is immutable and safe for concurrent use.
type Wallet struct {
	coupons []Coupon
	// group is each coupon's index in templates, which holds one template version per index (nil:
	// the version was not found).
	group     []int32
	templates []*Template
	complete  bool
}

// NewWallet prepares coupons, looking their templates up with lookup (nil: none is found). The
// wallet keeps coupons: do not change them afterwards.
func NewWallet(coupons []Coupon, lookup Lookup) *Wallet {
	w := &Wallet{coupons: coupons, group: make([]int32, len(coupons)), complete: true}
	type version struct {
		key     string
		version int
	}
	index := make(map[version]int32, len(coupons))
	for i := range coupons {
		v := version{coupons[i].TemplateKey, coupons[i].TemplateVersion}
		g, ok := index[v]
		if !ok {
			t := find(lookup, v.key, v.version)
			w.complete = w.complete && t != nil
			g = int32(len(w.templates))
			w.templates = append(w.templates, t)
			index[v] = g
		}
		w.group[i] = g
	}
	return w
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
// + that index, or 0 before it is met).
func (e *evaluator) templateIn(w *Wallet, i int) int32 {
	g := w.group[i]
	if ti := e.versions[g]; ti != 0 {
		return ti - 2
	}
	ti := int32(-1)
	if t := w.templates[g]; t != nil {
		ti = e.template(t)
	}
	e.versions[g] = ti + 2
	return ti
}
