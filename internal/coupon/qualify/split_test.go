package qualify_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/seedtest"
)

// checkSplit verifies Split's properties for one input and reports the first broken one.
func checkSplit(value int64, weights []int64) string {
	shares := qualify.Split(value, weights)
	if len(shares) != len(weights) {
		return "one share per weight"
	}
	var sum, total int64
	for _, w := range weights {
		total += w
	}
	bigTotal := big.NewInt(total)
	floors, rems := make([]int64, len(shares)), make([]*big.Int, len(shares))
	for i, s := range shares {
		if s < 0 {
			return "a share is negative"
		}
		if value <= total && s > weights[i] {
			return "a share exceeds its weight"
		}
		sum += s
		if total == 0 {
			continue
		}
		// Largest remainder: each share is the exact proportional share rounded down or up.
		exact := new(big.Int).Mul(big.NewInt(value), big.NewInt(weights[i]))
		q, r := new(big.Int).DivMod(exact, bigTotal, new(big.Int))
		floors[i], rems[i] = q.Int64(), r
		if s != floors[i] && s != floors[i]+1 {
			return "a share is not its proportional part rounded"
		}
	}
	if sum != value {
		return "the shares do not sum to the value"
	}
	if total == 0 {
		return ""
	}
	// The cents go to the largest remainders, ties to the lower index: no item rounded up comes
	// after an item rounded down in that order.
	for u := range shares {
		for d := range shares {
			if shares[u] != floors[u]+1 || shares[d] != floors[d] {
				continue
			}
			if c := rems[u].Cmp(rems[d]); c < 0 || (c == 0 && u > d) {
				return "a cent went to a smaller remainder, or to a later item of an equal one"
			}
		}
	}
	return ""
}

func TestSplitProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 3))
	for range 20_000 {
		n := 1 + rng.IntN(12)
		if rng.IntN(50) == 0 {
			n = 17 + rng.IntN(500) // the sorted path
		}
		weights := make([]int64, n)
		var total int64
		for i := range weights {
			switch rng.IntN(10) {
			case 0:
				weights[i] = 0
			case 1:
				weights[i] = rng.Int64N(math.MaxInt64 / 1024) // large amounts
			default:
				weights[i] = rng.Int64N(100_000)
			}
			total += weights[i]
		}
		var value int64
		switch rng.IntN(4) {
		case 0:
			value = total // everything off
		case 1:
			value = rng.Int64N(1_000_000) // may exceed the weights: a seller bonus
		default:
			value = rng.Int64N(total + 1)
		}
		require.Empty(t, checkSplit(value, weights), "value %d weights %v", value, weights)
	}
}

func TestSplitQuick(t *testing.T) {
	t.Parallel()
	prop := func(value uint32, raw []uint32) bool {
		if len(raw) == 0 {
			return true
		}
		weights := make([]int64, len(raw))
		for i, w := range raw {
			weights[i] = int64(w)
		}
		return checkSplit(int64(value), weights) == ""
	}
	require.NoError(t, quick.Check(prop, &quick.Config{MaxCount: 5000}))
}

func TestSplitExamples(t *testing.T) {
	t.Parallel()
	require.Equal(t, []int64{34, 33, 33}, qualify.Split(100, []int64{1, 1, 1}), "ties go to the lower index")
	require.Equal(t, []int64{33, 34, 33}, qualify.Split(100, []int64{100, 101, 100}))
	require.Equal(t, []int64{0, 0}, qualify.Split(0, []int64{5, 5}))
	require.Equal(t, []int64{7, 0}, qualify.Split(7, []int64{0, 0}), "no weight: all on the first")
	require.Equal(t, []int64{0, 10, 0}, qualify.Split(10, []int64{0, 10, 0}))
	require.Equal(t, []int64{1000, 2000}, qualify.Split(3000, []int64{1, 2}), "a bonus may exceed the weights")
	require.Equal(t, []int64{1, 1, 0, 0, 0}, qualify.Split(2, []int64{1, 1, 1, 1, 1}), "two cents for five: the first two")
	require.Equal(t, []int64{1, 1, 1, 1, 0}, qualify.Split(4, []int64{1, 1, 1, 1, 1}), "four cents for five: all but the last")
	require.Equal(t, []int64{1, 0, 1, 1, 1}, qualify.Split(4, []int64{2, 1, 2, 2, 2}), "all but the smallest remainder")
	for _, n := range []int{3, 8, 16, 17, 40} { // up to 16 items and past it
		for left := 1; left < n; left++ {
			want := make([]int64, n)
			for k := range left {
				want[k] = 1
			}
			require.Equal(t, want, qualify.Split(int64(left), slices.Repeat([]int64{1}, n)), "%d cents for %d", left, n)
		}
	}
}

// TestEvaluateSplitProperties runs Evaluate on random carts and wallets: every applicable coupon's
// split sums to its discount, no share is negative and no discount share exceeds its item.
func TestEvaluateSplitProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 5))
	for range 300 {
		b, cart := randomWallet(t, rng, 1+rng.IntN(20))
		b.evaluate(t, cart) // checks every outcome's split
	}
}
