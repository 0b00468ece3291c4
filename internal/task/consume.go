package task

import (
	"context"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ProgressConsumer is the durable name of the consumer of behaviour events on the EVENTS stream.
const ProgressConsumer = "task-progress"

// defaultProgressBatch is how many behaviour events one transaction applies at most, by default.
const defaultProgressBatch = 256

// Consume starts the durable consumer "task-progress" on the EVENTS stream: batches of behaviour
// events are recorded as processed and applied (ApplyBatch) in one transaction on db, so each event
// moves progress exactly once, whatever is redelivered. A message that is not a behaviour event is
// skipped (and counted). Every node may run it: instances share the stream.
func (s *Service) Consume(ctx context.Context, b *bus.Bus, db *sqldb.DB) (stop func(), err error) {
	return b.ConsumeBatchTx(ctx, db, bus.ConsumerOptions{Stream: bus.Events, Name: ProgressConsumer,
		BatchSize: s.opts.BatchSize, MaxAckPending: 4 * s.opts.BatchSize},
		func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
			events := make([]bus.Behaviour, 0, len(msgs))
			for _, m := range msgs {
				e, err := bus.DecodeBehaviour(m)
				if err != nil {
					s.log.Warn("task: skipping a message that is not a behaviour event", "id", m.ID, "err", err)
					tx.AfterCommit(func() { s.metrics.events.WithLabelValues(resultBad).Inc() })
					continue
				}
				events = append(events, e)
			}
			return s.ApplyBatch(ctx, tx, events)
		})
}
