package tenant

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A verification that began before a drop (a revocation committed meanwhile) stores nothing.
func TestKeyCacheRefusesAVerificationOlderThanADrop(t *testing.T) {
	t.Parallel()
	var c keyCache
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	p := Principal{TenantID: "mch_a", KeyID: "k1"}

	epoch := c.now()
	c.drop("k1") // RevokeKey commits while the key is being read
	c.put("k1", "h", p, now.Add(time.Minute), epoch)
	_, ok := c.get("k1", "h", now)
	require.False(t, ok, "the revoked key is not remembered")

	epoch = c.now()
	c.dropTenant("mch_b")
	c.put("k1", "h", p, now.Add(time.Minute), epoch)
	_, ok = c.get("k1", "h", now)
	require.False(t, ok)

	c.put("k1", "h", p, now.Add(time.Minute), c.now())
	got, ok := c.get("k1", "h", now)
	require.True(t, ok)
	require.Equal(t, p, got)
}
