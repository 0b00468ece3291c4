package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/kv/kvtest"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

func problemSlug(t *testing.T, err error) string {
	t.Helper()
	var p *client.Problem
	require.True(t, errors.As(err, &p), "want a problem, got %v", err)
	require.NotEmpty(t, p.RequestID, "every problem carries the request id")
	return p.Slug()
}

// publishIdempotency publishes an idempotency resource and waits until the node serves it.
func publishIdempotency(t *testing.T, n *node, tenantID string, c *client.Client, key string, spec map[string]any) {
	t.Helper()
	ctx := context.Background()
	var res struct {
		DraftRevision int `json:"draft_revision"`
	}
	_, err := c.Do(ctx, "GET", "/v1/config/idempotency/"+key, nil, &res)
	if err == nil {
		_, err = c.Do(ctx, "PUT", "/v1/config/idempotency/"+key+"/draft",
			map[string]any{"revision": res.DraftRevision, "spec": spec}, nil)
	} else {
		_, err = c.Do(ctx, "POST", "/v1/config/idempotency", map[string]any{"key": key, "spec": spec}, nil)
	}
	require.NoError(t, err)
	var v struct {
		Version int `json:"version"`
	}
	_, err = c.Do(ctx, "POST", "/v1/config/idempotency/"+key+"/publish", nil, &v)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, ok := n.app.Snapshot().Get(tenantID, KindIdempotency, key)
		return ok && p.Version == v.Version
	}, 10*time.Second, 5*time.Millisecond)
}

func TestIdempotencyEndToEnd(t *testing.T) {
	t.Parallel()
	redisPrefix := kvtest.Prefix(t, kvtest.Client(t))
	n := startNode(t, nodeOptions{dialect: sqldb.SQLite, redisPrefix: redisPrefix})
	ctx := context.Background()
	nm, err := n.platform.CreateMerchant(ctx, "Shop", "")
	require.NoError(t, err)
	admin := client.New(n.url, nm.AdminKey.Secret)

	// replay: the same key and body answer the first response again, and only one key exists
	first, err := admin.CreateKey(ctx, nm.Merchant.ID, "backend", "integration", client.IdempotencyKey("k-1"))
	require.NoError(t, err)
	var again client.NewKey
	resp, err := admin.Do(ctx, "POST", "/v1/merchants/"+nm.Merchant.ID+"/keys",
		map[string]string{"name": "backend", "role": "integration"}, &again, client.IdempotencyKey("k-1"))
	require.NoError(t, err)
	require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.Key.ID, again.Key.ID)
	page, err := admin.ListKeys(ctx, nm.Merchant.ID, client.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Items, 2) // the admin key and one integration key

	// the same key with another body
	_, err = admin.CreateKey(ctx, nm.Merchant.ID, "other", "viewer", client.IdempotencyKey("k-1"))
	require.Equal(t, "idempotency-key-mismatch", problemSlug(t, err))

	// records go to Redis by default when it is configured
	require.NotEmpty(t, redisKeys(t, redisPrefix))
	sqlBefore := countIdemRows(t, n)

	// switch policy and storage for create-key at run time, through the config center
	publishIdempotency(t, n, nm.Merchant.ID, admin, "create-key", map[string]any{"policy": "fail", "storage": "sql"})
	_, err = admin.CreateKey(ctx, nm.Merchant.ID, "probe", "viewer", client.IdempotencyKey("k-probe"))
	require.NoError(t, err)
	require.Equal(t, sqlBefore+1, countIdemRows(t, n), "the record now lands in SQL")
	_, err = admin.CreateKey(ctx, nm.Merchant.ID, "probe", "viewer", client.IdempotencyKey("k-probe"))
	require.Equal(t, "idempotency-key-used", problemSlug(t, err))

	// require a key on every write of this merchant
	publishIdempotency(t, n, nm.Merchant.ID, admin, "default", map[string]any{"required": true})
	_, err = admin.CreateKey(ctx, nm.Merchant.ID, "nokey", "viewer")
	require.Equal(t, "idempotency-key-missing", problemSlug(t, err))

	// another merchant is not affected by this merchant's settings
	other, err := n.platform.CreateMerchant(ctx, "Other", "")
	require.NoError(t, err)
	_, err = client.New(n.url, other.AdminKey.Secret).CreateKey(ctx, other.Merchant.ID, "nokey", "viewer")
	require.NoError(t, err)

	// a bad spec is refused at publish time with the field named
	_, err = admin.Do(ctx, "POST", "/v1/config/idempotency", map[string]any{"key": "bad",
		"spec": map[string]any{"policy": "sometimes"}}, nil, client.IdempotencyKey("k-bad"))
	var p *client.Problem
	require.True(t, errors.As(err, &p))
	require.Equal(t, 422, p.Status)
	require.Equal(t, "body.spec.policy", p.Errors[0].Location)
}

func redisKeys(t *testing.T, prefix string) []string {
	t.Helper()
	keys, err := kvtest.Client(t).Keys(context.Background(), prefix+"idem:*").Result()
	require.NoError(t, err)
	return keys
}

func countIdemRows(t *testing.T, n *node) int {
	t.Helper()
	var c int
	require.NoError(t, n.app.DB().Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM idem_records`).Scan(&c))
	return c
}

func TestExpiredIdempotencyRecordsArePurged(t *testing.T) {
	t.Parallel()
	fake := clock.NewFake(time.Now())
	n := startNode(t, nodeOptions{dialect: sqldb.SQLite, clock: fake})
	ctx := context.Background()
	nm, err := n.platform.CreateMerchant(ctx, "Shop", "", client.IdempotencyKey("m-1"))
	require.NoError(t, err)
	_, err = client.New(n.url, nm.AdminKey.Secret).CreateKey(ctx, nm.Merchant.ID, "k", "viewer", client.IdempotencyKey("k-1"))
	require.NoError(t, err)
	require.Equal(t, 2, countIdemRows(t, n))

	n.app.purgeExpiredIdempotency(ctx)
	require.Equal(t, 2, countIdemRows(t, n), "records within their TTL stay")

	fake.Advance(n.app.cfg.Idempotency.TTL.Std() + time.Minute)
	n.app.purgeExpiredIdempotency(ctx)
	require.Equal(t, 0, countIdemRows(t, n))
}
