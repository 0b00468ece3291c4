package coupon_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestIssueRulesAreCheckedAtPublish(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		b.template(t, "save30", save30)
		b.publish(t, tenantB, coupon.KindTemplate, "theirs", save30)

		_, err := b.publishErr(tenantA, coupon.KindIssueRule, "missing", `{"event_type":"order.paid","template":"nope"}`)
		requireProblem(t, err, problem.KindInvalid, "", "spec.template")
		_, err = b.publishErr(tenantA, coupon.KindIssueRule, "other-tenant", `{"event_type":"order.paid","template":"theirs"}`)
		requireProblem(t, err, problem.KindInvalid, "", "spec.template")
		_, err = b.publishErr(tenantA, coupon.KindIssueRule, "bad", `{"event_type":"Order Paid","template":"save30",
			"condition":"event.data.amount >","extra":1}`)
		requireProblem(t, err, problem.KindInvalid, "", "spec")
		_, err = b.publishErr(tenantA, coupon.KindIssueRule, "bad2", `{"event_type":"Order Paid","template":"save30",
			"condition":"event.data.amount + 1"}`)
		requireProblem(t, err, problem.KindInvalid, "", "spec.event_type", "spec.condition")
		_, err = b.publishErr(tenantA, coupon.KindTemplate, "broken", `{"type":"amount_off","amount":-5}`)
		requireProblem(t, err, problem.KindInvalid, "", "spec.amount")

		b.publish(t, tenantA, coupon.KindIssueRule, "good", `{"event_type":"order.paid","template":"save30"}`)
		p, ok := b.snap.Get(tenantA, coupon.KindIssueRule, "good")
		require.True(t, ok)
		var r coupon.IssueRule
		require.NoError(t, json.Unmarshal(p.Spec, &r))
		require.True(t, *r.Enabled, "enabled defaults to true")
	})
}

func TestIssueRulesIssueOnBehaviourEvents(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		b.template(t, "welcome", tenOff)
		b.publish(t, tenantA, coupon.KindIssueRule, "big-order", `{"event_type":"order.paid","template":"save30",
			"condition":"event.data.amount >= 10000 && user.id != 'banned'"}`)
		b.publish(t, tenantA, coupon.KindIssueRule, "off", `{"event_type":"order.paid","template":"welcome","enabled":false}`)

		bs := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{})
		stop, err := b.svc.Consume(ctx, bs)
		require.NoError(t, err)
		t.Cleanup(stop)

		send := func(id, typ, user string, amount int) bus.Behaviour {
			e := bus.Behaviour{TenantID: tenantA, ID: id, Source: "shop", Type: typ, UserID: user, Time: epoch,
				ReceivedAt: epoch, Data: json.RawMessage(`{"amount":` + itoa(amount) + `}`)}
			m, err := bs.BehaviourMessage(e)
			require.NoError(t, err)
			require.NoError(t, bs.Publish(ctx, m))
			return e
		}
		send("e1", "order.paid", "small", 5000)
		send("e2", "order.paid", "banned", 50000)
		send("e3", "checkin", "other", 50000)
		big := send("e4", "order.paid", "u1", 12000)
		send("e4", "order.paid", "u1", 12000) // a resend of the same event
		send("e5", "order.paid", "u1", 20000) // another order of the same user

		require.Eventually(t, func() bool { return b.count(t, "coupons", "user_id = 'u1'") == 2 }, 15*time.Second,
			20*time.Millisecond)
		// Events are handled in order: the earlier ones are done and issued nothing.
		require.Equal(t, 2, b.count(t, "coupons", ""))
		page, err := b.svc.List(ctx, coupon.ListParams{TenantID: tenantA, UserID: "u1"})
		require.NoError(t, err)
		for _, c := range page.Items {
			require.Equal(t, "save30", c.Template)
			require.Equal(t, coupon.SourceIssueRule, c.SourceKind)
		}

		// Handling an event again (a redelivery after the de-duplication window) issues nothing.
		require.NoError(t, b.svc.HandleBehaviour(ctx, big))
		require.Equal(t, 2, b.count(t, "coupons", ""))
	})
}
