package bus

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// BatchTxHandler applies the effects of several messages inside the transaction that records them
// as processed. msgs holds only messages not processed before, in delivery order; it may be empty
// when every message was a duplicate (the handler is not called then).
type BatchTxHandler func(ctx context.Context, tx *sqldb.Tx, msgs []Msg) error

// batchLinger is how long a batch waits for more messages once it has one.
const batchLinger = 2 * time.Millisecond

// ConsumeBatchTx is ConsumeTx for handlers that gain from batching. Messages arriving together (up
// to opts.BatchSize, waiting at most a couple of milliseconds for more) are recorded as processed
// and handed to handler in one transaction, then acknowledged. Messages processed before are
// skipped and acknowledged as duplicates. When a batch fails, its messages are retried one by one,
// so a poison message is retried (and terminated, with ErrPermanent or MaxDeliver) alone. Stop
// waits for the batch in hand and settles the messages already pulled.
func (b *Bus) ConsumeBatchTx(ctx context.Context, db *sqldb.DB, opts ConsumerOptions, handler BatchTxHandler) (stop func(), err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	bc := b.newBatchConsumer(ctx, opts)
	bc.db, bc.handler = db, handler
	stopConsume, err := b.startBatch(ctx, bc)
	if err != nil {
		return nil, err
	}
	return b.withPrune(ctx, db, bc.key, opts, stopConsume)
}

// BatchHandler handles several messages at once, outside any transaction of the bus's.
type BatchHandler func(ctx context.Context, msgs []Msg) error

// ConsumeBatch is ConsumeBatchTx for handlers whose effects are idempotent by themselves (an
// insert that skips rows it finds, say): batches are handed over the same way, a failing batch is
// retried message by message, but no processed record is kept, so a redelivered message reaches
// the handler again.
func (b *Bus) ConsumeBatch(ctx context.Context, opts ConsumerOptions, handler BatchHandler) (stop func(), err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	bc := b.newBatchConsumer(ctx, opts)
	bc.plain = handler
	return b.startBatch(ctx, bc)
}

func (b *Bus) newBatchConsumer(ctx context.Context, opts ConsumerOptions) *batchConsumer {
	return &batchConsumer{
		consumer: consumer{bus: b, opts: opts, ctx: ctx, log: b.log.With("stream", opts.Stream, "consumer", opts.Name)},
		key:      string(opts.Stream) + "/" + opts.Name,
		// The server hands out at most MaxAckPending unacknowledged messages, so the callback never
		// blocks on this queue (a blocked callback would starve the client of heartbeats).
		in: make(chan jetstream.Msg, max(opts.MaxAckPending, opts.BatchSize)), quit: make(chan struct{}),
	}
}

// startBatch creates the durable consumer and starts bc's loop; it returns the stop function.
func (b *Bus) startBatch(ctx context.Context, bc *batchConsumer) (stop func(), err error) {
	opts := bc.opts
	cons, err := b.upsertConsumer(ctx, opts)
	if err != nil {
		return nil, err
	}
	go bc.loop()
	cc, err := cons.Consume(bc.enqueue, jetstream.PullMaxMessages(opts.BatchSize), jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(bc.onError))
	if err != nil {
		close(bc.quit)
		return nil, fmt.Errorf("bus: consume %s/%s: %w", opts.Stream, opts.Name, err)
	}
	stop, err = b.supervise(ctx, cc, &bc.gate, func() { close(bc.quit) })
	if err != nil {
		close(bc.quit)
		return nil, err
	}
	return stop, nil
}

// batchConsumer runs one instance of a batching durable consumer: the client library's callback
// queues messages, and one goroutine takes them in batches.
type batchConsumer struct {
	consumer
	db      *sqldb.DB // ConsumeBatchTx: the database and handler
	handler BatchTxHandler
	plain   BatchHandler // ConsumeBatch: the handler alone
	key     string
	in      chan jetstream.Msg
	quit    chan struct{}
}

// enqueue is the library's callback: admit the message and queue it for the loop.
func (bc *batchConsumer) enqueue(jm jetstream.Msg) {
	if !bc.gate.enter() {
		_ = jm.Nak()
		bc.count(resultStopped)
		return
	}
	bc.in <- jm
}

// loop takes batches off the queue until the consumer has stopped and settled everything.
func (bc *batchConsumer) loop() {
	for {
		select {
		case <-bc.quit:
			return
		case first := <-bc.in:
			bc.handleBatch(bc.gather(first))
		}
	}
}

// gather collects up to BatchSize messages, waiting at most batchLinger after the first.
func (bc *batchConsumer) gather(first jetstream.Msg) []jetstream.Msg {
	batch := []jetstream.Msg{first}
	timer := time.NewTimer(batchLinger)
	defer timer.Stop()
	for len(batch) < bc.opts.BatchSize {
		select {
		case jm := <-bc.in:
			batch = append(batch, jm)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// handleBatch processes a batch in one transaction, or its messages one by one if that fails.
func (bc *batchConsumer) handleBatch(jms []jetstream.Msg) {
	defer func() {
		for range jms {
			bc.gate.leave()
		}
	}()
	msgs := make([]Msg, 0, len(jms))
	readable := make([]jetstream.Msg, 0, len(jms))
	for _, jm := range jms {
		msg, err := toMsg(bc.opts.Stream, jm)
		if err != nil {
			bc.log.Error("bus: unreadable message metadata; terminating it", "subject", jm.Subject(), "err", err)
			_ = jm.Term()
			bc.count(resultTerm)
			continue
		}
		msgs = append(msgs, msg)
		readable = append(readable, jm)
	}
	if len(msgs) == 0 {
		return
	}
	// Messages waiting in the queue or for a slow batch must not outlive AckWait on the server.
	defer keepAlive(bc.opts.AckWait/3, readable...)()
	start := time.Now()
	results, err := bc.process(msgs)
	bc.bus.metrics.handleTime.WithLabelValues(bc.opts.Name).Observe(time.Since(start).Seconds())
	if err == nil {
		for i, jm := range readable {
			bc.ack(jm, results[i])
		}
		return
	}
	if len(msgs) == 1 {
		bc.settle(readable[0], msgs[0], err)
		return
	}
	for i, jm := range readable {
		results, err := bc.process(msgs[i : i+1])
		if err == nil {
			bc.ack(jm, results[0])
			continue
		}
		bc.settle(jm, msgs[i], err)
	}
}

// process records msgs as processed and runs the handler on the fresh ones, in one transaction.
// results[i] is msgs[i]'s outcome: resultAck (new and handled), resultDuplicate (processed
// before) or resultSkipped (not relevant, see ConsumerOptions.Relevant: neither recorded nor
// handled).
func (bc *batchConsumer) process(msgs []Msg) (results []string, err error) {
	if bc.opts.Relevant == nil {
		return bc.processAll(msgs)
	}
	relevant, err := bc.opts.Relevant(bc.ctx, msgs)
	if err != nil {
		return nil, fmt.Errorf("bus: relevant: %w", err)
	}
	if len(relevant) != len(msgs) {
		return nil, fmt.Errorf("bus: relevant answered %d flags for %d messages", len(relevant), len(msgs))
	}
	results = make([]string, len(msgs))
	var (
		todo []Msg
		at   []int
	)
	for i, m := range msgs {
		if relevant[i] {
			todo, at = append(todo, m), append(at, i)
		} else {
			results[i] = resultSkipped
		}
	}
	if len(todo) == 0 {
		return results, nil
	}
	got, err := bc.processAll(todo)
	if err != nil {
		return nil, err
	}
	for n, i := range at {
		results[i] = got[n]
	}
	return results, nil
}

// processAll records msgs as processed and runs the handler on the new ones, in one transaction.
func (bc *batchConsumer) processAll(msgs []Msg) (results []string, err error) {
	if bc.plain != nil {
		if err := protect(func() error { return bc.plain(bc.ctx, msgs) }); err != nil {
			return nil, err
		}
		results = make([]string, len(msgs))
		for i := range results {
			results[i] = resultAck
		}
		return results, nil
	}
	err = bc.db.Tx(bc.ctx, func(tx *sqldb.Tx) error {
		fresh, err := bc.record(tx, msgs)
		if err != nil {
			return err
		}
		results = make([]string, len(msgs))
		todo := make([]Msg, 0, len(msgs))
		for i, m := range msgs {
			results[i] = resultDuplicate
			if fresh[i] {
				results[i] = resultAck
				todo = append(todo, m)
			}
		}
		if len(todo) == 0 {
			return nil
		}
		return protect(func() error { return bc.handler(bc.ctx, tx, todo) })
	})
	return results, err
}

// record inserts the processed rows of msgs and reports which were new. A message id that
// appears twice in one batch is new only the first time.
func (bc *batchConsumer) record(tx *sqldb.Tx, msgs []Msg) ([]bool, error) {
	now := sqldb.Micros(bc.bus.clock.Now())
	args := make([]any, 0, 3*len(msgs))
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = processedID(m)
		args = append(args, bc.key, ids[i], now)
	}
	rows, err := tx.Query(bc.ctx, "INSERT INTO bus_processed (consumer, msg_id, processed_at) VALUES "+
		tx.Dialect().Tuples(len(msgs), 3)+" ON CONFLICT DO NOTHING RETURNING msg_id", args...)
	if err != nil {
		return nil, fmt.Errorf("bus: record processed: %w", err)
	}
	defer rows.Close()
	inserted := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("bus: record processed: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bus: record processed: %w", err)
	}
	fresh := make([]bool, len(msgs))
	for i, id := range ids {
		fresh[i] = inserted[id]
		delete(inserted, id)
	}
	return fresh, nil
}

// processedID is the id a message is recorded under in bus_processed.
func processedID(m Msg) string {
	if m.ID != "" {
		return m.ID
	}
	// Sequences restart if the stream is ever recreated; the stored time tells the two apart.
	return "seq:" + strconv.FormatUint(m.Sequence, 10) + ":" + strconv.FormatInt(m.Time.UnixNano(), 10)
}
