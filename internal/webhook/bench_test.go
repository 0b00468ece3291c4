package webhook_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/webhook"
)

// BenchmarkDispatch measures deliveries per second from queued rows to a local receiver answering
// 204: claim, sign, POST, log the attempt, mark delivered. Fan-out is outside the timer.
func BenchmarkDispatch(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := sqldbtest.Open(b, d, sets)
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(recv.Close)
			svc := webhook.New(db, webhook.Options{Clock: clock.Real{}, Logger: slog.New(slog.DiscardHandler)})
			tenant := ids.New("mch", clock.Real{}.Now())
			_, err := svc.CreateEndpoint(b.Context(), webhook.CreateEndpointParams{TenantID: tenant, URL: recv.URL,
				EventTypes: []string{"*"}})
			require.NoError(b, err)
			disp := svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true, BatchSize: 256, Concurrency: 32})
			require.NoError(b, db.Tx(b.Context(), func(tx *sqldb.Tx) error {
				for range b.N {
					e := bus.Event{ID: ids.New("evt", clock.Real{}.Now()), Type: "grant.succeeded", TenantID: tenant,
						Data: []byte(`{"amount":100}`)}
					if _, err := svc.Fanout(b.Context(), tx, e); err != nil {
						return err
					}
				}
				return nil
			}))
			b.ResetTimer()
			sent := 0
			for sent < b.N {
				n, err := disp.DispatchDue(b.Context())
				require.NoError(b, err)
				require.NotZero(b, n)
				sent += n
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkConsume measures domain events per second through the fan-out consumer (Consume with
// its production options), from events already on the DOMAIN stream of the embedded server until
// each is acknowledged, for a merchant with no endpoint (events skipped) and with one endpoint
// taking every event (processed records and deliveries written).
func BenchmarkConsume(b *testing.B) {
	types := []string{"grant.succeeded", "ledger.entry_created", "task.rewarded"}
	for _, d := range sqldbtest.Dialects {
		for _, endpoints := range []int{0, 1} {
			b.Run(fmt.Sprintf("%s/endpoints=%d", d, endpoints), func(b *testing.B) {
				db := sqldbtest.Open(b, d, sets)
				reg := prometheus.NewRegistry()
				bs := bustest.NewEnv(b, bustest.Embedded).Open(b, bus.Options{Registerer: reg})
				ctx := b.Context()
				svc := webhook.New(db, webhook.Options{Clock: clock.Real{}, Logger: slog.New(slog.DiscardHandler)})
				tenant := ids.New("mch", clock.Real{}.Now())
				for range endpoints {
					_, err := svc.CreateEndpoint(ctx, webhook.CreateEndpointParams{TenantID: tenant,
						URL: "https://hooks.example.com/perk", EventTypes: []string{"*"}})
					require.NoError(b, err)
				}
				msgs := make([]bus.Message, b.N)
				for i := range msgs {
					e := bus.Event{ID: ids.New("evt", clock.Real{}.Now()), Type: types[i%len(types)], TenantID: tenant,
						UserID: "u-1", Time: clock.Real{}.Now(), Data: []byte(`{"amount":100}`)}
					raw, err := json.Marshal(e)
					require.NoError(b, err)
					msgs[i] = bus.Message{Subject: bs.EventSubject(e.Type), ID: e.ID, Data: raw}
				}
				for i := 0; i < len(msgs); i += 1000 {
					require.NoError(b, bs.PublishBatch(ctx, msgs[i:min(i+1000, len(msgs))]))
				}
				b.ResetTimer()
				start := time.Now()
				stop, err := svc.Consume(ctx, bs, bus.ConsumerOptions{})
				require.NoError(b, err)
				for handled(b, reg, "ack")+handled(b, reg, "skipped") < float64(b.N) {
					time.Sleep(2 * time.Millisecond)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				stop()
				var queued int
				require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM webhook_deliveries`).Scan(&queued))
				require.Equal(b, endpoints*b.N, queued)
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			})
		}
	}
}
