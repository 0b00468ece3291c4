package reward_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

// TestAsynchronousPathThroughTheBus: grants created in a caller's transaction (not run inline)
// are run by the grant.created consumer, on two nodes at once, each exactly once; their
// grant.succeeded events reach the DOMAIN stream through the outbox.
func TestAsynchronousPathThroughTheBus(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		env := bustest.NewEnv(t, bustest.Embedded)
		bs := env.Open(t, bus.Options{})
		b := setup(t, db, func(o *reward.Options) { o.Events = bs.EnqueueEvent })
		relay := bus.NewRelay(db, bs, bus.RelayOptions{PollInterval: 20 * time.Millisecond})
		go func() { _ = relay.Run(ctx) }()
		for _, svc := range []*reward.Service{b.svc, b.newService(t, func(o *reward.Options) { o.Node = "second" })} {
			stop, err := svc.Consume(ctx, bs)
			require.NoError(t, err)
			t.Cleanup(stop)
		}
		succeeded := map[string]int{}
		done := make(chan string, 100)
		stop, err := bs.Consume(ctx, bus.ConsumerOptions{Stream: bus.Domain, Name: "test-succeeded",
			FilterSubjects: []string{bs.EventSubject(reward.EventSucceeded)}}, func(_ context.Context, m bus.Msg) error {
			e, err := bus.DecodeEvent(m)
			if err != nil {
				return err
			}
			done <- e.SourceID
			return nil
		})
		require.NoError(t, err)
		t.Cleanup(stop)

		const n = 20
		var grants []reward.Grant
		for i := range n {
			grants = append(grants, b.create(t, pointsParams("u1", fmt.Sprintf("async-%d", i), 2)))
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for {
				select {
				case id := <-done:
					succeeded[id]++
					continue
				default:
				}
				break
			}
			require.Len(c, succeeded, n)
		}, 30*time.Second, 20*time.Millisecond)
		for _, g := range grants {
			require.Equal(t, 1, succeeded[g.ID])
			got, err := b.svc.Get(ctx, tenantA, g.ID)
			require.NoError(t, err)
			require.Equal(t, reward.StateSucceeded, got.State)
			require.Equal(t, 1, b.entries(t, tenantA, g.ID))
		}
		require.EqualValues(t, 2*n, b.balance(t, tenantA, "u1", "points"))
	})
}
