package qualify

import (
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/problem"
)

// Limits of a cart.
const (
	// MaxItems bounds the lines of a cart.
	MaxItems = 500
	// MaxQuantity bounds one line's quantity.
	MaxQuantity = 100_000
	// MaxSKULength bounds a SKU and the item's category, brand and model, in characters.
	MaxSKULength = 128
	// MaxCartValueLength bounds the cart's business line and channel, in characters.
	MaxCartValueLength = 64
)

// ValidateCart checks a cart: at least one item, at most 500; sku required; unit_price >= 0;
// quantity >= 1; a known ISO 4217 currency; amounts that do not overflow. A bad cart is a
// problem.Invalid error with paths like "cart.items[2].quantity".
func ValidateCart(c Cart) error {
	var fs problem.Fields
	if tooLong(c.BusinessLine, MaxCartValueLength) {
		fs.Add("cart.business_line", "must be at most %d characters", MaxCartValueLength)
	}
	if tooLong(c.Channel, MaxCartValueLength) {
		fs.Add("cart.channel", "must be at most %d characters", MaxCartValueLength)
	}
	if c.Currency != "" && !KnownCurrency(c.Currency) {
		fs.Add("cart.currency", "unknown currency %q; known: %s", c.Currency, knownCodes())
	}
	switch {
	case len(c.Items) == 0:
		fs.Add("cart.items", "at least one item is required")
	case len(c.Items) > MaxItems:
		fs.Add("cart.items", "at most %d items, got %d", MaxItems, len(c.Items))
		return fs.Err("invalid cart")
	}
	var total int64
	overflow := false
	for i := range c.Items {
		it := &c.Items[i]
		path := fmt.Sprintf("cart.items[%d]", i)
		switch {
		case it.SKU == "":
			fs.Add(path+".sku", "is required")
		case tooLong(it.SKU, MaxSKULength):
			fs.Add(path+".sku", "must be at most %d characters", MaxSKULength)
		}
		for _, f := range [...]struct{ name, v string }{{"category", it.Category}, {"brand", it.Brand}, {"model", it.Model}} {
			if tooLong(f.v, MaxSKULength) {
				fs.Add(path+"."+f.name, "must be at most %d characters", MaxSKULength)
			}
		}
		if it.UnitPrice < 0 {
			fs.Add(path+".unit_price", "must not be negative, got %d", it.UnitPrice)
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			fs.Add(path+".quantity", "must be between 1 and %d, got %d", MaxQuantity, it.Quantity)
		}
		if it.UnitPrice < 0 || it.Quantity < 1 || it.Quantity > MaxQuantity {
			continue
		}
		line, ok := mulNonNeg(it.UnitPrice, it.Quantity)
		if !ok {
			fs.Add(path+".unit_price", "unit_price × quantity overflows")
			continue
		}
		if total > math.MaxInt64-line {
			overflow = true
		}
		total += line
	}
	if overflow {
		fs.Add("cart.items", "the cart's total overflows")
	}
	return fs.Err("invalid cart")
}

// tooLong reports whether s has more than n characters.
func tooLong(s string, n int) bool {
	return len(s) > n && utf8.RuneCountInString(s) > n
}

// mulNonNeg multiplies two non-negative numbers, reporting overflow.
func mulNonNeg(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	if a > math.MaxInt64/b {
		return 0, false
	}
	return a * b, true
}

// lineAmounts returns each line's unit_price × quantity (in buf's array when it fits) and the
// total. Evaluate expects a valid cart; for a bad one, negative prices and quantities read as 0 and amounts are clamped so that
// the total stays within int64, which keeps every later sum from overflowing.
func lineAmounts(buf []int64, items []Item) ([]int64, int64) {
	out := resize(buf, len(items))
	var total int64
	for i := range items {
		it := &items[i]
		line, ok := mulNonNeg(max(it.UnitPrice, 0), max(it.Quantity, 0))
		if !ok || line > math.MaxInt64-total {
			line = math.MaxInt64 - total
		}
		out[i] = line
		total += line
	}
	return out, total
}

// celVars are the variables of CEL conditions, kept between evaluations so that their maps are
// refilled rather than allocated: CEL reads them during EvalBool and keeps nothing. The values are
// pointers to the cart's strings and numbers, which CEL reads as it reads the values themselves,
// so that binding them allocates nothing.
type celVars struct {
	vars, cart map[string]any
	items      []any
	// boxed is items as an interface value, kept while items keeps its array and length:
	// boxing a slice allocates.
	boxed    any
	itemMaps []map[string]any
	set      bool
}

// fill binds user and the cart as CEL conditions see it. The cart, cur, amounts and total must
// not change until reset.
func (v *celVars) fill(user map[string]any, c *Cart, cur *string, amounts []int64,
	total *int64) map[string]any {
	if v.vars == nil {
		v.vars, v.cart = make(map[string]any, 2), make(map[string]any, 5)
	}
	if cap(v.items) < len(c.Items) {
		v.items, v.boxed = make([]any, len(c.Items)), nil
	}
	items := v.items[:len(c.Items)]
	if b, ok := v.boxed.([]any); !ok || len(b) != len(items) {
		v.boxed = items
	}
	for len(v.itemMaps) < len(c.Items) {
		v.itemMaps = append(v.itemMaps, make(map[string]any, 7))
	}
	for i := range c.Items {
		it, m := &c.Items[i], v.itemMaps[i]
		m["sku"], m["category"] = &it.SKU, &it.Category
		m["brand"], m["model"] = &it.Brand, &it.Model
		m["unit_price"], m["quantity"], m["amount"] = &it.UnitPrice, &it.Quantity, &amounts[i]
		items[i] = m
	}
	v.cart["business_line"], v.cart["channel"] = &c.BusinessLine, &c.Channel
	v.cart["currency"] = cur
	v.cart["amount"], v.cart["items"] = total, v.boxed
	v.vars["user"], v.vars["cart"] = user, v.cart
	v.set = true
	return v.vars
}

// reset drops the values of the last evaluation, keeping the maps' storage.
func (v *celVars) reset() {
	if !v.set {
		return
	}
	v.set = false
	clear(v.vars)
	clear(v.cart)
	clear(v.items)
	for _, m := range v.itemMaps {
		clear(m)
	}
	if len(v.itemMaps) > 64 {
		v.itemMaps, v.items, v.boxed = nil, nil, nil // a large cart's maps are not kept
	}
}
