package app

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
)

// BenchmarkGrants measures durable point grants end to end — a grant, its step, the ledger entry,
// the lot, the balances and the outbox events committed — through the Go API (reward.Service.Create)
// and through the HTTP API (POST /v1/grants), on SQLite and PostgreSQL, at 8 and 32 concurrent
// clients. After each run it checks exactly-once: one ledger entry per grant, the balances equal to
// the grants, and a clean ledger.Verify.
func BenchmarkGrants(b *testing.B) {
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		for _, via := range []string{"go", "http"} {
			for _, clients := range []int{8, 32} {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", d, via, clients), func(b *testing.B) {
					benchGrants(b, d, via, clients)
				})
			}
		}
	}
}

func benchGrants(b *testing.B, d sqldb.Dialect, via string, clients int) {
	n := startNode(b, nodeOptions{dialect: d})
	ctx := context.Background()
	nm, err := n.platform.CreateMerchant(ctx, "Bench", "")
	require.NoError(b, err)
	api := client.New(n.url, nm.AdminKey.Secret)
	users := 1000
	points := []reward.Reward{{Type: "points", Amount: 1}}
	total := max(b.N, clients*20)
	grant := func(ctx context.Context, i int) error {
		user := "u" + strconv.Itoa(i%users)
		source := "order-" + strconv.Itoa(i)
		if via == "go" {
			g, _, err := n.app.rewards.Create(ctx, reward.CreateParams{TenantID: nm.Merchant.ID, UserID: user,
				SourceKind: "bench", SourceID: source, Rewards: points})
			if err == nil && g.State != "succeeded" {
				err = fmt.Errorf("grant %s is %s", g.ID, g.State)
			}
			return err
		}
		var g struct {
			State string `json:"state"`
		}
		_, err := api.Do(ctx, "POST", "/v1/grants", map[string]any{"user_id": user, "source_id": source,
			"rewards": points}, &g)
		if err == nil && g.State != "succeeded" {
			err = fmt.Errorf("grant answered %s", g.State)
		}
		return err
	}
	b.ResetTimer()
	res := runLoad(b, clients, total, grant)
	b.StopTimer()
	res.report(b, "grants")
	checkExactlyOnce(b, n, nm.Merchant.ID, total)
}

// checkExactlyOnce fails the benchmark unless the ledger holds exactly one 1-point entry per grant.
func checkExactlyOnce(b *testing.B, n *node, tenantID string, grants int) {
	b.Helper()
	ctx := context.Background()
	var entries, sum int64
	require.NoError(b, n.app.DB().Reader().QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(amount), 0)
		FROM ledger_entries WHERE tenant_id = $1 AND kind = 'grant'`, tenantID).Scan(&entries, &sum))
	require.Equal(b, int64(grants), entries, "one ledger entry per grant")
	require.Equal(b, int64(grants), sum)
	liability, err := n.app.ledger.Liability(ctx, tenantID, "points")
	require.NoError(b, err)
	b.Logf("%d grants → %d entries, outstanding %+v", grants, entries, liability)
	report, err := n.app.ledger.Verify(ctx)
	require.NoError(b, err)
	require.True(b, report.OK(), "%v", report.Mismatches)
}
