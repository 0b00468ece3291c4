package qualify

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMessagesFormatting checks the reasons built into byte buffers against the plain formatting
// they replace: strconv.Quote for values and groups, time.Format for times.
func TestMessagesFormatting(t *testing.T) {
	t.Parallel()
	values := []string{"", "phone", "a b", `say "hi"`, `back\slash`, "手机", "tab\there", "\x7f", "~"}
	at := time.Date(2026, 3, 10, 9, 0, 0, 0, time.FixedZone("CST", 8*3600))
	ts := at.UTC().Format(timeLayout)
	for _, v := range values {
		require.Equal(t, strconv.Quote(v), string(appendQuoted(nil, v)), v)
		en, zh := messages{}, messages{zh: true}
		want := "not valid for brand " + strconv.Quote(v)
		if v == "" {
			want = "not valid for this brand"
		}
		require.Equal(t, want, en.notFor(dimBrand, v).Message)
		want = "不适用于品牌" + strconv.Quote(v)
		if v == "" {
			want = "不适用于该品牌"
		}
		require.Equal(t, want, zh.notFor(dimBrand, v).Message)
		require.Equal(t, "group "+strconv.Quote(v)+" allows 12 per order", en.groupFull(v, 12).Message)
		require.Equal(t, strconv.Quote(v)+"组每单限用3张", zh.groupFull(v, 3).Message)
	}
	require.Equal(t, "valid from "+ts, messages{}.notStarted(at).Message)
	require.Equal(t, ts+"起可用", messages{zh: true}.notStarted(at).Message)
	require.Equal(t, "expired at "+ts, messages{}.expired(at).Message)
	require.Equal(t, "已于"+ts+"过期", messages{zh: true}.expired(at).Message)
	require.Equal(t, "expired at 2026-03-10 01:00 UTC", messages{}.expired(at).Message)
}
