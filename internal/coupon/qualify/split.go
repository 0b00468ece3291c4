package qualify

import (
	"math/bits"
	"slices"
)

// splitter shares a value over items in proportion to weights, by largest remainder. It keeps its
// scratch space between calls; it is not safe for concurrent use.
type splitter struct {
	rem   []uint64
	order []int32
}

// Split shares value over weights in proportion, by largest remainder: each item first gets
// floor(value × weight / total), then the cents left go one each to the items with the largest
// remainders, ties to the lower index. The shares sum to value and none is negative; when value
// is at most the sum of the weights, no share exceeds its weight. Weights must not be negative;
// when they are all zero the whole value goes to the first item. value must not be negative.
func Split(value int64, weights []int64) []int64 {
	idx := make([]int32, len(weights))
	for i := range idx {
		idx[i] = int32(i)
	}
	out := make([]int64, len(weights))
	var sp splitter
	sp.split(value, idx, weights, out)
	return out
}

// split writes into out[k] the share of item idx[k] (weights w[idx[k]]).
func (sp *splitter) split(value int64, idx []int32, w []int64, out []int64) {
	n := len(idx)
	switch n {
	case 0:
		return
	case 1: // the common case of one eligible item: all of it, whatever the weight
		out[0] = value
		return
	}
	var total uint64
	for _, i := range idx {
		total += uint64(w[i])
	}
	if total == 0 || value == 0 {
		clear(out[:n])
		out[0] = value
		return
	}
	if cap(sp.rem) < n {
		sp.rem = make([]uint64, n, max(n, 8))
	}
	rem := sp.rem[:n]
	left := value
	for k, i := range idx {
		// value × w / total fits in 64 bits because w <= total, so hi < total and Div64 is safe.
		hi, lo := bits.Mul64(uint64(value), uint64(w[i]))
		q, r := bits.Div64(hi, lo, total)
		out[k] = int64(q)
		rem[k] = r
		left -= int64(q)
	}
	if left == 0 {
		return
	}
	// left < n: the remainders' fractions sum to left and each is below 1, so at least left of
	// them are positive.
	switch {
	case n == 2: // left is 1: the cent goes to the larger remainder, ties to the first
		k := 0
		if rem[1] > rem[0] {
			k = 1
		}
		out[k]++
		return
	case n <= 16:
		// Item k gets a cent when fewer than left items come before it, by remainder (largest
		// first, ties to the lower index): counted without branching on the remainders, which
		// would mispredict.
		for k := range n {
			before := 0
			for j := range k {
				if rem[j] >= rem[k] {
					before++
				}
			}
			for j := k + 1; j < n; j++ {
				if rem[j] > rem[k] {
					before++
				}
			}
			if before < int(left) {
				out[k]++
			}
		}
		return
	}
	if cap(sp.order) < n {
		sp.order = make([]int32, n)
	}
	order := sp.order[:n]
	for k := range order {
		order[k] = int32(k)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if rem[a] != rem[b] {
			if rem[a] > rem[b] {
				return -1
			}
			return 1
		}
		return int(a - b)
	})
	for _, k := range order[:left] {
		out[k]++
	}
}
