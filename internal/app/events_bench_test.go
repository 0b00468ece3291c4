package app

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/platform/prom"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/task"
)

// BenchmarkEventsEndToEnd measures behaviour events end to end — ingest (durable on EVENTS) →
// task progress → completion → grant → ledger — on SQLite and PostgreSQL, with 10,000 users and 20
// active tasks (one event type each, target 10, 1 point: about one event in ten completes a task).
// Phase 1 sends b.N events (at least 20,000) as fast as four clients can through the Go ingest API
// and reports events/s until every one is applied. Phase 2 sends at half that rate for five
// seconds with probe events that each complete a one-step task for a fresh user, and reports the
// p50/p99 from a probe's send to its ledger entry's commit time. RSS is the benchmark process's
// (the node runs in it).
func BenchmarkEventsEndToEnd(b *testing.B) {
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		b.Run(string(d), func(b *testing.B) { benchEvents(b, d) })
	}
}

type eventsBench struct {
	n      *node
	tenant string
	seq    int
	mu     sync.Mutex
}

func benchEvents(b *testing.B, d sqldb.Dialect) {
	o := nodeOptions{dialect: d}
	if d == sqldb.Postgres {
		o.busPrefix = externalPrefix(b)
	}
	eb := setupEventsBench(b, o)
	total := max(b.N, 20000)
	b.ResetTimer()
	start := time.Now()
	eb.sendAll(b, total, 4, 500)
	sent := time.Since(start)
	eb.waitApplied(b, total)
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(total) / elapsed.Seconds()
	b.ReportMetric(rate, "events/s")
	p50, p99, probes := eb.paced(b, rate/2, 5*time.Second)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(rssMiB(), "RSS-MiB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d events in %s (all accepted after %s); half rate %.0f/s: %d probes, event-to-reward p50 %s p99 %s",
		total, elapsed.Round(time.Millisecond), sent.Round(time.Millisecond), rate/2, probes, p50, p99)
}

// setupEventsBench publishes the 20 tasks and the probe task for a new merchant.
func setupEventsBench(b *testing.B, o nodeOptions) *eventsBench {
	n := startNode(b, o)
	ctx := context.Background()
	nm, err := n.platform.CreateMerchant(ctx, "Bench", "")
	require.NoError(b, err)
	api := client.New(n.url, nm.AdminKey.Secret)
	publish := func(key, eventType string, target int) {
		spec := map[string]any{"kind": "one_off", "trigger": map[string]any{"event_types": []string{eventType}},
			"metric": map[string]any{"type": "count"},
			"stages": []any{map[string]any{"target": target, "rewards": []any{map[string]any{"type": "points", "amount": 1}}}},
			"title":  map[string]any{"en": key}}
		_, err := api.Do(ctx, "POST", "/v1/config/task", map[string]any{"key": key, "spec": spec}, nil)
		require.NoError(b, err)
		_, err = api.Do(ctx, "POST", "/v1/config/task/"+key+"/publish", nil, nil)
		require.NoError(b, err)
	}
	for i := range 20 {
		publish(fmt.Sprintf("bench-%02d", i), fmt.Sprintf("act.k%02d", i), 10)
	}
	publish("probe", "probe", 1)
	require.Eventually(b, func() bool {
		return len(n.app.Snapshot().List(nm.Merchant.ID, task.KindTask)) == 21
	}, 10*time.Second, 5*time.Millisecond)
	return &eventsBench{n: n, tenant: nm.Merchant.ID}
}

// batch builds count events over 10,000 users and the 20 event types.
func (eb *eventsBench) batch(count int) []byte {
	eb.mu.Lock()
	first := eb.seq
	eb.seq += count
	eb.mu.Unlock()
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range count {
		k := first + i
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"specversion":"1.0","id":"e%d","source":"/bench","type":"act.k%02d","subject":"u%d","data":{"amount":%d}}`,
			k, (k/7)%20, (k*7919)%10000, k%10000)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// sendAll sends total events in batches from clients goroutines through the Go ingest API.
func (eb *eventsBench) sendAll(b *testing.B, total, clients, size int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	left := total
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				n := min(size, left)
				left -= n
				mu.Unlock()
				if n == 0 {
					return
				}
				res, err := eb.n.app.ingest.Accept(context.Background(), eb.tenant, "application/json", eb.batch(n))
				if err != nil || res.Accepted != n {
					b.Errorf("ingest: %v %+v", err, res.Failed)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// waitApplied waits until the task-progress consumer has handled want events, reading its
// counter from the node's metrics (counting rows would compete with the node for the CPU).
func (eb *eventsBench) waitApplied(b *testing.B, want int) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if n := eb.handled(b); n >= float64(want) {
			return
		} else if time.Now().After(deadline) {
			b.Fatalf("only %.0f of %d events applied", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// handled is how many messages the task-progress consumer has acknowledged (fresh or duplicate).
func (eb *eventsBench) handled(b *testing.B) float64 {
	var n float64
	for _, result := range []string{"ack", "duplicate"} {
		v, err := prom.Value(eb.n.app.registry, "perk_bus_handled_total",
			map[string]string{"consumer": task.ProgressConsumer, "result": result})
		require.NoError(b, err)
		n += v
	}
	return n
}

// paced sends at rate events/s for d in batches of 100, five of them probes (events of new users
// that complete the probe task at once), and measures each probe's send to the commit of its ledger
// entry. Five per batch make ~600 probes at 2,500 events/s, so that the p99 is not the second worst
// of a hundred.
func (eb *eventsBench) paced(b *testing.B, rate float64, d time.Duration) (p50, p99 time.Duration, probes int) {
	ctx := context.Background()
	const size, perBatch = 100, 5
	interval := time.Duration(float64(size) / rate * float64(time.Second))
	sent := map[string]time.Time{}
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		tick := time.Now()
		body := eb.batch(size - perBatch)
		body = body[:len(body)-1]
		now := time.Now()
		for k := range perBatch {
			user := fmt.Sprintf("probe-%d-%d", i, k)
			body = fmt.Appendf(body, `,{"specversion":"1.0","id":"p%d-%d","source":"/bench","type":"probe","subject":"%s"}`,
				i, k, user)
			sent[user] = now
		}
		body = append(body, ']')
		res, err := eb.n.app.ingest.Accept(ctx, eb.tenant, "application/json", body)
		require.NoError(b, err)
		require.Equal(b, size, res.Accepted)
		time.Sleep(interval - time.Since(tick))
	}
	var latencies []time.Duration
	deadline := time.Now().Add(2 * time.Minute)
	for len(latencies) < len(sent) {
		require.False(b, time.Now().After(deadline), "probes never rewarded")
		latencies = latencies[:0]
		rows, err := eb.n.app.DB().Reader().Query(ctx, `SELECT user_id, created_at FROM ledger_entries
			WHERE tenant_id = $1 AND kind = 'grant' AND user_id LIKE 'probe-%'`, eb.tenant)
		require.NoError(b, err)
		for rows.Next() {
			var user string
			var at int64
			require.NoError(b, rows.Scan(&user, &at))
			latencies = append(latencies, sqldb.FromMicros(at).Sub(sent[user]))
		}
		require.NoError(b, rows.Close())
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(latencies)
	return latencies[len(latencies)/2], latencies[len(latencies)*99/100], len(latencies)
}

// rssMiB is the process's resident set, from /proc (0 where there is none).
func rssMiB() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb); err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
