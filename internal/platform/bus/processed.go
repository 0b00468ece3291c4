package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// TxHandler applies a message's effect inside the transaction that records it as processed.
type TxHandler func(ctx context.Context, tx *sqldb.Tx, msg Msg) error

// pruneBatch bounds the rows one prune statement deletes, so it never holds the writer for long.
const pruneBatch = 500

// ConsumeTx is Consume with an exactly-once effect. For each message it opens a transaction on db
// and records (consumer, message ID) in bus_processed. If the record exists, the message is a
// duplicate (a redelivery, or a republish outside the de-duplication window): nothing else happens
// and it is acknowledged. Otherwise handler runs in the same transaction, which commits before the
// acknowledgement; a handler error rolls everything back, the record included, and the message is
// retried.
//
// handler must keep its side effects inside tx (sqldb.Tx may retry the transaction) and must not
// open another write transaction on db (SQLite has one writer). A message without a Nats-Msg-Id is
// keyed by its stream sequence and time, which only catches redeliveries, not republished copies.
// Records older than opts.ProcessedRetention are pruned every opts.PruneInterval.
func (b *Bus) ConsumeTx(ctx context.Context, db *sqldb.DB, opts ConsumerOptions, handler TxHandler) (stop func(), err error) {
	if opts.Relevant != nil {
		return nil, errRelevantUnbatched
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	key := string(opts.Stream) + "/" + opts.Name
	stopConsume, err := b.Consume(ctx, opts, func(ctx context.Context, msg Msg) error {
		return b.processOnce(ctx, db, key, msg, handler)
	})
	if err != nil {
		return nil, err
	}
	return b.withPrune(ctx, db, key, opts, stopConsume)
}

// withPrune starts the loop that prunes a consumer's processed records and returns a stop function
// that stops the consumer, then the loop.
func (b *Bus) withPrune(ctx context.Context, db *sqldb.DB, key string, opts ConsumerOptions, stopConsume func()) (func(), error) {
	pruneCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.pruneLoop(pruneCtx, db, key, opts)
	}()
	stopPrune := func() {
		cancel()
		<-done
	}
	id, err := b.track(stopPrune)
	if err != nil {
		stopConsume()
		stopPrune()
		return nil, err
	}
	return func() {
		stopConsume()
		stopPrune()
		b.untrack(id)
	}, nil
}

func (b *Bus) processOnce(ctx context.Context, db *sqldb.DB, key string, msg Msg, handler TxHandler) error {
	id := processedID(msg)
	duplicate := false
	err := db.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO bus_processed (consumer, msg_id, processed_at) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, key, id, sqldb.Micros(b.clock.Now()))
		if err != nil {
			return fmt.Errorf("bus: record processed: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("bus: record processed: %w", err)
		}
		duplicate = n == 0
		if duplicate {
			return nil
		}
		return handler(ctx, tx, msg)
	})
	if err != nil {
		return err
	}
	if duplicate {
		return errDuplicate
	}
	return nil
}

func (b *Bus) pruneLoop(ctx context.Context, db *sqldb.DB, key string, opts ConsumerOptions) {
	ticker := time.NewTicker(opts.PruneInterval)
	defer ticker.Stop()
	for {
		if err := b.pruneProcessed(ctx, db, key, b.clock.Now().Add(-opts.ProcessedRetention)); err != nil && ctx.Err() == nil {
			b.log.Warn("bus: prune processed messages", "consumer", key, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// pruneProcessed deletes a consumer's records older than before, a small batch per transaction.
func (b *Bus) pruneProcessed(ctx context.Context, db *sqldb.DB, key string, before time.Time) error {
	return deleteInBatches(ctx, db, `DELETE FROM bus_processed WHERE consumer = $1 AND msg_id IN (
		SELECT msg_id FROM bus_processed WHERE consumer = $1 AND processed_at < $2 LIMIT $3)`,
		key, sqldb.Micros(before))
}

// deleteInBatches runs query, a DELETE whose last parameter limits it to pruneBatch rows, in one
// short transaction after another until a run deletes fewer: it never holds the writer for long.
func deleteInBatches(ctx context.Context, db *sqldb.DB, query string, args ...any) error {
	args = append(args, pruneBatch)
	for ctx.Err() == nil {
		var n int64
		err := db.Tx(ctx, func(tx *sqldb.Tx) error {
			res, err := tx.Exec(ctx, query, args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil || n < pruneBatch {
			return err
		}
	}
	return ctx.Err()
}
