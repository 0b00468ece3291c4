package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// BenchmarkQualifyHTTP measures POST /v1/users/{user_id}/coupons/qualify over HTTP on loopback,
// the load generator in the same process: 200 users each holding 20 coupons of 20 templates (mixed
// types, thresholds, categories and stack groups), a 5-item cart, 8 and 32 clients, SQLite.
func BenchmarkQualifyHTTP(b *testing.B) {
	n := startNode(b, nodeOptions{dialect: sqldb.SQLite})
	ctx := context.Background()
	nm, err := n.platform.CreateMerchant(ctx, "Bench", "")
	require.NoError(b, err)
	api := client.New(n.url, nm.AdminKey.Secret)
	const users = 200
	userIDs := make([]string, users)
	for i := range userIDs {
		userIDs[i] = "u" + strconv.Itoa(i)
	}
	for i := range 20 {
		key := fmt.Sprintf("tpl-%02d", i)
		spec := map[string]any{"type": "amount_off", "amount": 500 + 100*i, "threshold": map[string]any{"amount": 5000 + 1000*i},
			"validity": map[string]any{"days": 30}, "title": map[string]any{"en": key}}
		switch i % 4 {
		case 1:
			spec = map[string]any{"type": "percent_off", "percent_bp": 500 + 100*i, "cap": 3000,
				"applicability": map[string]any{"category": map[string]any{"include": []string{"phone", "case"}}},
				"stacking":      map[string]any{"mode": "group", "group": "cat", "max_per_order": 2},
				"validity":      map[string]any{"days": 30}, "title": map[string]any{"en": key}}
		case 2:
			spec["stacking"] = map[string]any{"mode": "group", "group": "shop", "max_per_order": 1}
		case 3:
			spec["applicability"] = map[string]any{"brand": map[string]any{"exclude": []string{"acme"}}}
		}
		_, err := api.Do(ctx, "POST", "/v1/config/coupon_template", map[string]any{"key": key, "spec": spec}, nil)
		require.NoError(b, err)
		_, err = api.Do(ctx, "POST", "/v1/config/coupon_template/"+key+"/publish", nil, nil)
		require.NoError(b, err)
		require.Eventually(b, func() bool {
			_, ok := n.app.Snapshot().Get(nm.Merchant.ID, coupon.KindTemplate, key)
			return ok
		}, 10*time.Second, 5*time.Millisecond)
		_, err = api.Do(ctx, "POST", "/v1/coupon-templates/"+key+"/issue", map[string]any{"user_ids": userIDs, "business_key": "bench-" + key}, nil)
		require.NoError(b, err)
	}
	cart := map[string]any{"cart": map[string]any{"items": []any{
		map[string]any{"sku": "p1", "category": "phone", "brand": "acme", "unit_price": 399900, "quantity": 1},
		map[string]any{"sku": "c1", "category": "case", "brand": "other", "unit_price": 9900, "quantity": 2},
		map[string]any{"sku": "t1", "category": "apparel", "brand": "other", "unit_price": 4900, "quantity": 3},
		map[string]any{"sku": "b1", "category": "book", "brand": "pub", "unit_price": 3900, "quantity": 1},
		map[string]any{"sku": "s1", "category": "snack", "brand": "other", "unit_price": 990, "quantity": 5},
	}}}
	// The issuance's 4,000 events are logged and fanned out before the clock starts.
	settle(b, n.app.DB(), nm.Merchant.ID)
	waitQuiet(b, n.app.DB())
	body, err := json.Marshal(cart)
	require.NoError(b, err)
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 64
	for _, clients := range []int{8, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			total := max(b.N, 2000)
			// A lean load generator (it shares the two cores with the server): raw requests, and the
			// answer checked by counting its coupons rather than decoding it.
			res := runLoad(b, clients, total, func(ctx context.Context, i int) error {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url+"/v1/users/"+userIDs[i%users]+"/coupons/qualify",
					bytes.NewReader(body))
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+nm.AdminKey.Secret)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				raw, err := io.ReadAll(resp.Body)
				if got := bytes.Count(raw, []byte(`"coupon_id"`)); err == nil && (resp.StatusCode != http.StatusOK || got != 20) {
					err = fmt.Errorf("status %d: %d coupons", resp.StatusCode, got)
				}
				return err
			})
			res.report(b, "requests")
		})
	}
	// The same load from wrk, a C load generator, on the same box: what the server sustains when
	// the client costs little.
	paths := make([]string, users)
	for i, u := range userIDs {
		paths[i] = "/v1/users/" + u + "/coupons/qualify"
	}
	for _, conns := range []int{8, 32} {
		b.Run(fmt.Sprintf("wrk/conns=%d", conns), func(b *testing.B) {
			run := runWrk(b, wrkParams{url: n.url, paths: paths, body: string(body), threads: 1, conns: conns,
				duration: 5 * time.Second, headers: map[string]string{"Authorization": "Bearer " + nm.AdminKey.Secret,
					"Content-Type": "application/json"}})
			if run.bad > 0 {
				b.Fatalf("%d of %d answers were not 2xx", run.bad, run.requests)
			}
			b.ReportMetric(run.rps, "requests/s")
			b.ReportMetric(float64(run.p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(run.p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(100*run.cpu.Seconds()/run.wall.Seconds(), "wrk-cpu-%")
			// What the server spends on a request, which a busy box changes less than the rate.
			b.ReportMetric(float64(run.server.Microseconds())/float64(run.requests), "server-cpu-us/req")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// waitQuiet waits until the exactly-once consumers have stopped recording messages.
func waitQuiet(b *testing.B, db *sqldb.DB) {
	last, still := -1, 0
	for still < 3 {
		var n int
		require.NoError(b, db.Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM bus_processed`).Scan(&n))
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
		time.Sleep(200 * time.Millisecond)
	}
}
