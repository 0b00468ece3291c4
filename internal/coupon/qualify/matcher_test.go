package qualify

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMatcherHashed checks admitsHashed, which reads the hashes and their bits first, against
// admits, which compares the strings, on random include and exclude lists of 0 to 40 values.
func TestMatcherHashed(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) []string {
		var vs []string
		for range n {
			vs = append(vs, fmt.Sprintf("v%d", rng.IntN(60)))
		}
		return vs
	}
	admitted, refused := 0, 0
	for range 300 {
		m := newMatcher(Rule{Include: pick(rng.IntN(41)), Exclude: pick(rng.IntN(4))})
		for i := range 70 {
			v := fmt.Sprintf("v%d", i)
			want := m.admits(v)
			require.Equal(t, want, m.admitsHashed(v, hashOf(v)), "%s in %v / %v", v, m.inc, m.exc)
			if want {
				admitted++
			} else {
				refused++
			}
		}
	}
	require.Positive(t, admitted)
	require.Positive(t, refused)
}
