package webhook_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/webhook"
)

func TestEndpointConformance(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		t.Run("CreateGetList", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			ne := b.endpoint(t, "grant.succeeded", "ledger.*", "grant.succeeded")
			require.True(t, strings.HasPrefix(ne.Endpoint.ID, "whe_"), ne.Endpoint.ID)
			require.True(t, strings.HasPrefix(ne.Secret, "whsec_"))
			require.Len(t, ne.Secret, len("whsec_")+44, "base64 of 32 bytes")
			require.Equal(t, []string{"grant.succeeded", "ledger.*"}, ne.Endpoint.EventTypes, "duplicates dropped")
			require.True(t, ne.Endpoint.Enabled)
			got, err := b.svc.GetEndpoint(t.Context(), b.tenant, ne.Endpoint.ID)
			require.NoError(t, err)
			require.Equal(t, ne.Endpoint, got)
			raw, err := json.Marshal(got)
			require.NoError(t, err)
			require.NotContains(t, string(raw), "whsec_", "an endpoint never carries its secret")

			created := []string{ne.Endpoint.ID}
			for range 4 {
				created = append(created, b.endpoint(t, "*").Endpoint.ID)
			}
			var all []webhook.Endpoint
			cursor := ""
			for {
				page, err := b.svc.ListEndpoints(t.Context(), b.tenant, webhook.ListParams{Cursor: cursor, Limit: 2})
				require.NoError(t, err)
				all = append(all, page.Items...)
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
			var listed []string
			for _, e := range all {
				listed = append(listed, e.ID)
			}
			require.ElementsMatch(t, created, listed)
			require.IsIncreasing(t, listed, "in id order")
		})

		t.Run("UpdateAndDisable", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			ne := b.endpoint(t, "*")
			d := b.fanout(t, b.event("grant.succeeded"))
			require.Equal(t, 1, d)
			b.clock.Advance(time.Minute)
			url, desc := "https://example.com/hooks", "prod"
			e, err := b.svc.UpdateEndpoint(t.Context(), webhook.UpdateEndpointParams{TenantID: b.tenant, ID: ne.Endpoint.ID,
				URL: &url, Description: &desc, EventTypes: []string{"grant.*"}})
			require.NoError(t, err)
			require.Equal(t, url, e.URL)
			require.Equal(t, []string{"grant.*"}, e.EventTypes)
			require.Equal(t, b.clock.Now(), e.UpdatedAt)

			off, reason := false, "maintenance until Monday"
			e, err = b.svc.UpdateEndpoint(t.Context(), webhook.UpdateEndpointParams{TenantID: b.tenant, ID: ne.Endpoint.ID,
				Enabled: &off, DisabledReason: &reason})
			require.NoError(t, err)
			require.False(t, e.Enabled)
			require.Equal(t, reason, e.DisabledReason)
			require.NotNil(t, e.DisabledAt)
			canceled := b.deliveries(t, ne.Endpoint.ID, webhook.StateCanceled)
			require.Len(t, canceled, 1, "disabling cancels pending deliveries")
			require.Contains(t, canceled[0].LastError, reason)
			require.Equal(t, 0, b.fanout(t, b.event("grant.succeeded")), "a disabled endpoint gets nothing")

			on := true
			e, err = b.svc.UpdateEndpoint(t.Context(), webhook.UpdateEndpointParams{TenantID: b.tenant, ID: ne.Endpoint.ID, Enabled: &on})
			require.NoError(t, err)
			require.True(t, e.Enabled)
			require.Empty(t, e.DisabledReason)
			require.Nil(t, e.DisabledAt)
		})

		t.Run("TenantIsolation", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			ne := b.endpoint(t, "*")
			require.Equal(t, 1, b.fanout(t, b.event("grant.succeeded")))
			deliveryID := b.deliveries(t, ne.Endpoint.ID)[0].ID
			intruder := setup(t, db)
			ctx := t.Context()
			_, err := intruder.svc.GetEndpoint(ctx, intruder.tenant, ne.Endpoint.ID)
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			on := true
			_, err = intruder.svc.UpdateEndpoint(ctx, webhook.UpdateEndpointParams{TenantID: intruder.tenant, ID: ne.Endpoint.ID, Enabled: &on})
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			_, err = intruder.svc.RotateSecret(ctx, webhook.RotateSecretParams{TenantID: intruder.tenant, ID: ne.Endpoint.ID})
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			_, err = intruder.svc.SendTest(ctx, webhook.SendTestParams{TenantID: intruder.tenant, EndpointID: ne.Endpoint.ID})
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			_, err = intruder.svc.ListDeliveries(ctx, webhook.ListDeliveriesParams{TenantID: intruder.tenant, EndpointID: ne.Endpoint.ID})
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			_, err = intruder.svc.GetDelivery(ctx, intruder.tenant, deliveryID)
			requireProblem(t, err, problem.KindNotFound, webhook.CodeDeliveryNotFound)
			_, err = intruder.svc.Resend(ctx, intruder.tenant, deliveryID)
			requireProblem(t, err, problem.KindNotFound, webhook.CodeDeliveryNotFound)
			requireProblem(t, intruder.svc.DeleteEndpoint(ctx, intruder.tenant, ne.Endpoint.ID), problem.KindNotFound,
				webhook.CodeEndpointNotFound)
			page, err := intruder.svc.ListEndpoints(ctx, intruder.tenant, webhook.ListParams{})
			require.NoError(t, err)
			require.Empty(t, page.Items)
			_, err = b.svc.GetEndpoint(ctx, b.tenant, ne.Endpoint.ID)
			require.NoError(t, err, "the owner still has it")
		})

		t.Run("BadInputWritesNothing", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			ctx := t.Context()
			for _, tc := range []struct {
				name  string
				p     webhook.CreateEndpointParams
				paths []string
			}{
				{"ftp url", webhook.CreateEndpointParams{URL: "ftp://example.com/x", EventTypes: []string{"*"}}, []string{"body.url"}},
				{"no scheme", webhook.CreateEndpointParams{URL: "example.com/x", EventTypes: []string{"*"}}, []string{"body.url"}},
				{"no host", webhook.CreateEndpointParams{URL: "https:///x", EventTypes: []string{"*"}}, []string{"body.url"}},
				{"javascript", webhook.CreateEndpointParams{URL: "javascript:alert(1)", EventTypes: []string{"*"}}, []string{"body.url"}},
				{"empty url", webhook.CreateEndpointParams{EventTypes: []string{"*"}}, []string{"body.url"}},
				{"empty filters", webhook.CreateEndpointParams{URL: "https://example.com", EventTypes: []string{}}, []string{"body.event_types"}},
				{"bad filters", webhook.CreateEndpointParams{URL: "https://example.com",
					EventTypes: []string{"grant.succeeded", "Grant", "grant.**", "*.succeeded", ""}},
					[]string{"body.event_types[1]", "body.event_types[2]", "body.event_types[3]", "body.event_types[4]"}},
				{"everything wrong", webhook.CreateEndpointParams{URL: "mailto:a@b.c", Description: strings.Repeat("x", 501)},
					[]string{"body.url", "body.description", "body.event_types"}},
			} {
				tc.p.TenantID = b.tenant
				_, err := b.svc.CreateEndpoint(ctx, tc.p)
				requireProblem(t, err, problem.KindInvalid, "", tc.paths...)
			}
			require.Zero(t, count(t, db, `SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $1`, b.tenant))

			ne := b.endpoint(t, "*")
			bad := "gopher://x"
			_, err := b.svc.UpdateEndpoint(ctx, webhook.UpdateEndpointParams{TenantID: b.tenant, ID: ne.Endpoint.ID,
				URL: &bad, EventTypes: []string{}})
			requireProblem(t, err, problem.KindInvalid, "", "body.url", "body.event_types")
			got, err := b.svc.GetEndpoint(ctx, b.tenant, ne.Endpoint.ID)
			require.NoError(t, err)
			require.Equal(t, ne.Endpoint, got, "a refused change changes nothing")

			_, err = b.svc.GetEndpoint(ctx, b.tenant, "whe_nope")
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			_, err = b.svc.SendTest(ctx, webhook.SendTestParams{TenantID: b.tenant, EndpointID: "whe_nope"})
			requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
			_, err = b.svc.SendTest(ctx, webhook.SendTestParams{TenantID: b.tenant, EndpointID: ne.Endpoint.ID, Data: []byte(`[1]`)})
			requireProblem(t, err, problem.KindInvalid, "", "body.data")
			_, err = b.svc.ListDeliveries(ctx, webhook.ListDeliveriesParams{TenantID: b.tenant, EndpointID: ne.Endpoint.ID,
				States: []webhook.DeliveryState{"lost"}})
			requireProblem(t, err, problem.KindInvalid, "", "query.state")
			_, err = b.svc.ListEndpoints(ctx, b.tenant, webhook.ListParams{Cursor: "garbage!"})
			requireProblem(t, err, problem.KindInvalid, "", "query.cursor")
			long := 8 * 24 * time.Hour
			_, err = b.svc.RotateSecret(ctx, webhook.RotateSecretParams{TenantID: b.tenant, ID: ne.Endpoint.ID, Grace: &long})
			requireProblem(t, err, problem.KindInvalid, "", "body.grace_seconds")
			_, err = b.svc.Resend(ctx, b.tenant, "whd_nope")
			requireProblem(t, err, problem.KindNotFound, webhook.CodeDeliveryNotFound)
			require.Zero(t, count(t, db, `SELECT COUNT(*) FROM webhook_deliveries WHERE tenant_id = $1`, b.tenant))
		})

		t.Run("EndpointLimit", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			svc := webhook.New(db, webhook.Options{Clock: b.clock, MaxEndpoints: 2})
			for i := range 3 {
				_, err := svc.CreateEndpoint(t.Context(), webhook.CreateEndpointParams{TenantID: b.tenant,
					URL: "https://example.com", EventTypes: []string{"*"}})
				if i < 2 {
					require.NoError(t, err)
				} else {
					requireProblem(t, err, problem.KindConflict, webhook.CodeEndpointLimit)
				}
			}
		})

		t.Run("FanoutFiltersAndWildcards", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			exact := b.endpoint(t, "grant.succeeded")
			family := b.endpoint(t, "grant.*")
			all := b.endpoint(t, "*")
			ledger := b.endpoint(t, "ledger.entry_created", "coupon.*")
			off := b.endpoint(t, "*")
			no := false
			_, err := b.svc.UpdateEndpoint(t.Context(), webhook.UpdateEndpointParams{TenantID: b.tenant, ID: off.Endpoint.ID, Enabled: &no})
			require.NoError(t, err)
			stranger := setup(t, db)
			strangerAll := stranger.endpoint(t, "*")

			succeeded := b.event("grant.succeeded")
			require.Equal(t, 3+2+2+1+1, b.fanout(t, succeeded, b.event("grant.step.failed"), b.event("ledger.entry_created"),
				b.event("ledger.entry_reversed"), b.event("grantx.created")))
			require.Zero(t, b.fanout(t, succeeded), "the same event again queues nothing")

			types := func(ne webhook.NewEndpoint) []string {
				var out []string
				for _, d := range b.deliveries(t, ne.Endpoint.ID) {
					out = append(out, d.EventType)
				}
				return out
			}
			require.ElementsMatch(t, []string{"grant.succeeded"}, types(exact))
			require.ElementsMatch(t, []string{"grant.succeeded", "grant.step.failed"}, types(family))
			require.ElementsMatch(t, []string{"grant.succeeded", "grant.step.failed", "ledger.entry_created",
				"ledger.entry_reversed", "grantx.created"}, types(all))
			require.ElementsMatch(t, []string{"ledger.entry_created"}, types(ledger))
			require.Empty(t, types(off))
			require.Empty(t, stranger.deliveries(t, strangerAll.Endpoint.ID), "another merchant's endpoints see nothing")
			for _, d := range b.deliveries(t, all.Endpoint.ID) {
				require.Equal(t, webhook.StatePending, d.State)
				require.Equal(t, b.clock.Now(), *d.NextAttemptAt)
			}
		})

		t.Run("DeliveryPagination", func(t *testing.T) {
			t.Parallel()
			b := setup(t, db)
			ne := b.endpoint(t, "*")
			for range 7 {
				b.fanout(t, b.event("grant.succeeded"))
			}
			var seen []string
			cursor := ""
			for {
				page, err := b.svc.ListDeliveries(t.Context(), webhook.ListDeliveriesParams{TenantID: b.tenant,
					EndpointID: ne.Endpoint.ID, Cursor: cursor, Limit: 3})
				require.NoError(t, err)
				for _, d := range page.Items {
					seen = append(seen, d.ID)
				}
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
			require.Len(t, seen, 7)
			require.IsDecreasing(t, seen, "newest first")
		})
	})
}
