package webhook_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
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
