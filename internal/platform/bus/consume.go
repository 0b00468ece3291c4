package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerOptions configures a durable consumer. Zero fields take the defaults.
type ConsumerOptions struct {
	// Stream is the stream to read.
	Stream Stream
	// Name is the durable name. Every instance with this name, on any node, shares the work.
	Name string
	// FilterSubjects restricts the consumer to these subjects (wildcards allowed); empty means the
	// whole stream. More than one needs nats-server 2.10 or later.
	FilterSubjects []string
	// MaxAckPending bounds the messages handed out and not yet acknowledged, across all instances
	// (default 1000). Messages waiting for a retry count against it.
	MaxAckPending int
	// AckWait is how long the server waits for an acknowledgement before redelivering (default 30s).
	// Handlers that run longer are kept alive with in-progress signals, so AckWait only matters
	// when a node dies.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message; after the last failed one the message is
	// terminated and logged (default 0: unlimited).
	MaxDeliver int
	// Backoff is the delay before redelivery after the n-th failed delivery; the last value repeats
	// (default 1s, 5s, 15s, 1m, 5m).
	Backoff []time.Duration
	// BatchSize is how many messages an instance pulls at once (default 64).
	BatchSize int
	// DeliverNew starts a new durable at the end of the stream instead of its beginning. It has no
	// effect on a durable that exists already.
	DeliverNew bool
	// ProcessedRetention is how long ConsumeTx remembers processed message IDs (default 8 days: longer
	// than the streams keep messages and than any sane relay outage).
	ProcessedRetention time.Duration
	// PruneInterval is how often ConsumeTx deletes processed IDs older than ProcessedRetention
	// (default 1h).
	PruneInterval time.Duration
	// Relevant, for ConsumeBatchTx and ConsumeBatch (the others refuse it), tells which messages of
	// a batch the handler must see. The
	// others are acknowledged at once (counted as "skipped"), with no processed record, and a batch
	// with no relevant message opens no transaction. Use it for consumers that ignore most of what
	// their subjects carry; it must be cheap (reads only) and, for a given message, give the same
	// answer each time it matters: a message skipped is never handled. An error fails the batch
	// (retried message by message). Nil means every message is relevant.
	Relevant RelevantFunc
}

// errRelevantUnbatched refuses ConsumerOptions.Relevant where it would be ignored.
var errRelevantUnbatched = errors.New("bus: ConsumerOptions.Relevant is for ConsumeBatchTx and ConsumeBatch")

// RelevantFunc reports, for each message of a batch, whether the handler must see it.
type RelevantFunc func(ctx context.Context, msgs []Msg) ([]bool, error)

// pullExpiry bounds how long one pull request stays open. The client's default (30 s) let a
// consumer under heavy load sit for the rest of a stuck pull before asking again (seen as
// 30-second stalls of the task-progress consumer on a saturated 2-core box); 5 s bounds that.
const pullExpiry = 5 * time.Second

// DefaultBackoff is the redelivery schedule of a failing message.
var DefaultBackoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, time.Minute, 5 * time.Minute}

// DefaultProcessedRetention is how long ConsumeTx remembers processed message IDs.
const DefaultProcessedRetention = 8 * 24 * time.Hour

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o ConsumerOptions) withDefaults() (ConsumerOptions, error) {
	if !slices.Contains(Streams, o.Stream) {
		return o, fmt.Errorf("bus: unknown stream %q", o.Stream)
	}
	if !namePattern.MatchString(o.Name) {
		return o, fmt.Errorf("bus: consumer name %q may hold only letters, digits, '-' and '_'", o.Name)
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1000
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = -1
	}
	if len(o.Backoff) == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.ProcessedRetention <= 0 {
		o.ProcessedRetention = DefaultProcessedRetention
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Hour
	}
	return o, nil
}

// Msg is a message handed to a handler.
type Msg struct {
	// Stream is the stream it came from.
	Stream Stream
	// Subject is its subject.
	Subject string
	// ID is its Nats-Msg-Id (empty when it was published without one).
	ID string
	// Data is the payload.
	Data []byte
	// Header holds its other headers (first value of each).
	Header map[string]string
	// Deliveries counts deliveries of this message to this consumer, this one included.
	Deliveries uint64
	// Sequence is its sequence number in the stream.
	Sequence uint64
	// Time is when the stream stored it.
	Time time.Time
}

// Handler handles one message. Returning nil acknowledges it; an error has it redelivered after a
// backoff, unless it wraps ErrPermanent.
type Handler func(ctx context.Context, msg Msg) error

// ErrPermanent marks a handler error that retrying cannot fix: the message is terminated (not
// redelivered) and logged. Wrap errors with Permanent.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so the consumer terminates the message instead of retrying it.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (e permanentError) Error() string        { return "permanent: " + e.err.Error() }
func (e permanentError) Unwrap() error        { return e.err }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }

type panicError struct {
	value any
	stack []byte
}

func (e panicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.value) }

// errDuplicate is what ConsumeTx's handler returns for a message it processed before: ack, count.
var errDuplicate = errors.New("bus: duplicate message")

// Consume starts a durable pull consumer (creating or updating it) and hands each message to
// handler, one at a time per instance. Instances with the same Name, here or on other nodes, share
// the messages. The consumer stops when ctx is done or stop is called; stop waits for the message
// in hand and hands back the ones pulled but not started. Don't call stop from the handler.
func (b *Bus) Consume(ctx context.Context, opts ConsumerOptions, handler Handler) (stop func(), err error) {
	if opts.Relevant != nil {
		return nil, errRelevantUnbatched
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cons, err := b.upsertConsumer(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := &consumer{bus: b, opts: opts, handler: handler, ctx: ctx,
		log: b.log.With("stream", opts.Stream, "consumer", opts.Name)}
	cc, err := cons.Consume(c.handle,
		jetstream.PullMaxMessages(opts.BatchSize), jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(c.onError))
	if err != nil {
		return nil, fmt.Errorf("bus: consume %s/%s: %w", opts.Stream, opts.Name, err)
	}
	return b.supervise(ctx, cc, &c.gate)
}

func (b *Bus) upsertConsumer(ctx context.Context, opts ConsumerOptions) (jetstream.Consumer, error) {
	stream := b.StreamName(opts.Stream)
	cfg := jetstream.ConsumerConfig{
		Durable:       opts.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxDeliver:    opts.MaxDeliver,
		MaxAckPending: opts.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if opts.DeliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	if len(opts.FilterSubjects) == 1 {
		cfg.FilterSubject = opts.FilterSubjects[0]
	} else {
		cfg.FilterSubjects = opts.FilterSubjects
	}
	// The deliver policy of an existing durable cannot change: keep whatever it was created with.
	if existing, err := b.js.Consumer(ctx, stream, opts.Name); err == nil {
		cfg.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cfg.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("bus: look up consumer %s/%s: %w", stream, opts.Name, err)
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: create consumer %s/%s: %w", stream, opts.Name, err)
	}
	return cons, nil
}

// gate admits handler calls until it is closed, and lets stop wait for the calls admitted.
type gate struct {
	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup
}

// enter admits a call, unless the gate is closed; an admitted call must leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.calls.Add(1)
	return true
}

func (g *gate) leave() { g.calls.Done() }

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

func (g *gate) closing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// supervise registers a running consumer with the bus and returns its idempotent stop function,
// which also runs when ctx is done. Stop waits for the handler calls in progress, however long, then
// runs the after functions.
func (b *Bus) supervise(ctx context.Context, cc jetstream.ConsumeContext, g *gate, after ...func()) (func(), error) {
	var (
		once sync.Once
		id   int
		done = make(chan struct{})
	)
	stop := func() {
		once.Do(func() {
			g.close()
			cc.Drain()
			select {
			case <-cc.Closed():
			case <-time.After(15 * time.Second):
				// E.g. the connection is down: nothing more will arrive anyway.
				b.log.Warn("bus: consumer did not drain in 15s; stopping it")
				cc.Stop()
			}
			g.calls.Wait()
			for _, fn := range after {
				fn()
			}
			close(done)
			b.untrack(id)
		})
	}
	id, err := b.track(stop)
	if err != nil {
		cc.Stop()
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-done:
		}
	}()
	return stop, nil
}

// consumer runs one instance of a durable consumer.
type consumer struct {
	bus     *Bus
	opts    ConsumerOptions
	handler Handler
	ctx     context.Context
	log     *slog.Logger
	gate    gate
}

func (c *consumer) handle(jm jetstream.Msg) {
	if !c.gate.enter() {
		// Hand it straight back so another instance takes it now, not after AckWait.
		_ = jm.Nak()
		c.count(resultStopped)
		return
	}
	defer c.gate.leave()
	msg, err := toMsg(c.opts.Stream, jm)
	if err != nil {
		c.log.Error("bus: unreadable message metadata; terminating it", "subject", jm.Subject(), "err", err)
		_ = jm.Term()
		c.count(resultTerm)
		return
	}
	stopKeepAlive := keepAlive(c.opts.AckWait/3, jm)
	start := time.Now()
	err = call(c.ctx, c.handler, msg)
	stopKeepAlive()
	c.bus.metrics.handleTime.WithLabelValues(c.opts.Name).Observe(time.Since(start).Seconds())
	c.settle(jm, msg, err)
}

// settle acknowledges, retries or terminates a handled message.
func (c *consumer) settle(jm jetstream.Msg, msg Msg, err error) {
	log := c.log
	attrs := []any{"subject", msg.Subject, "id", msg.ID, "seq", msg.Sequence, "deliveries", msg.Deliveries}
	var pe panicError
	switch {
	case err == nil:
		c.ack(jm, resultAck)
	case errors.Is(err, errDuplicate):
		c.ack(jm, resultDuplicate)
	case errors.Is(err, ErrPermanent):
		log.Error("bus: permanent failure; message dropped", append(attrs, "err", err)...)
		_ = jm.Term()
		c.count(resultTerm)
	case c.opts.MaxDeliver > 0 && msg.Deliveries >= uint64(c.opts.MaxDeliver):
		log.Error("bus: last delivery failed; message dropped", append(attrs, "err", err)...)
		_ = jm.Term()
		c.count(resultTerm)
	case c.gate.closing():
		_ = jm.Nak()
		c.count(resultStopped)
	case errors.As(err, &pe):
		log.Error("bus: handler panicked; will retry", append(attrs, "panic", pe.value, "stack", string(pe.stack))...)
		_ = jm.NakWithDelay(c.backoff(msg.Deliveries))
		c.count(resultPanic)
	default:
		log.Warn("bus: handler failed; will retry", append(attrs, "err", err)...)
		_ = jm.NakWithDelay(c.backoff(msg.Deliveries))
		c.count(resultRetry)
	}
}

func (c *consumer) ack(jm jetstream.Msg, result string) {
	if err := jm.Ack(); err != nil {
		// The server redelivers it after AckWait; idempotent handlers absorb that.
		c.log.Warn("bus: ack failed", "err", err)
	}
	c.count(result)
}

func (c *consumer) backoff(deliveries uint64) time.Duration {
	i := min(int(deliveries), len(c.opts.Backoff)) - 1
	return c.opts.Backoff[max(i, 0)]
}

func (c *consumer) count(result string) {
	c.bus.metrics.handled.WithLabelValues(c.opts.Name, result).Inc()
}

func (c *consumer) onError(_ jetstream.ConsumeContext, err error) {
	c.log.Debug("bus: consumer", "err", err)
}

// call runs the handler, turning a panic into a panicError.
func call(ctx context.Context, h Handler, msg Msg) error {
	return protect(func() error { return h(ctx, msg) })
}

// protect runs f, turning a panic into a panicError.
func protect(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError{value: p, stack: debug.Stack()}
		}
	}()
	return f()
}

// keepAlive tells the server the messages are still being worked on every interval, until stopped.
func keepAlive(every time.Duration, jms ...jetstream.Msg) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		timer   *time.Timer
	)
	mu.Lock()
	timer = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		for _, jm := range jms {
			_ = jm.InProgress()
		}
		timer.Reset(every)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

func toMsg(stream Stream, jm jetstream.Msg) (Msg, error) {
	meta, err := jm.Metadata()
	if err != nil {
		return Msg{}, err
	}
	msg := Msg{
		Stream:     stream,
		Subject:    jm.Subject(),
		Data:       jm.Data(),
		Deliveries: meta.NumDelivered,
		Sequence:   meta.Sequence.Stream,
		Time:       meta.Timestamp.UTC(),
	}
	for k, v := range jm.Headers() {
		if len(v) == 0 {
			continue
		}
		if k == jetstream.MsgIDHeader {
			msg.ID = v[0]
			continue
		}
		if msg.Header == nil {
			msg.Header = map[string]string{}
		}
		msg.Header[k] = v[0]
	}
	return msg, nil
}

// Watch delivers every new message on stream matching filter (a subject, wildcards allowed; empty
// means all) to handler, starting after the call returns. Every watcher sees every message: use it
// for notices all nodes must act on. Nothing is acknowledged or redelivered; handler errors and
// panics are logged. It stops when ctx is done or stop is called.
func (b *Bus) Watch(ctx context.Context, stream Stream, filter string, handler Handler) (stop func(), err error) {
	if !slices.Contains(Streams, stream) {
		return nil, fmt.Errorf("bus: unknown stream %q", stream)
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	oc, err := b.js.OrderedConsumer(ctx, b.StreamName(stream), cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", b.StreamName(stream), err)
	}
	var g gate
	log := b.log.With("stream", stream, "watch", filter)
	cc, err := oc.Consume(func(jm jetstream.Msg) {
		if !g.enter() {
			return
		}
		defer g.leave()
		msg, err := toMsg(stream, jm)
		if err == nil {
			err = call(ctx, handler, msg)
		}
		if err != nil {
			log.Error("bus: watch handler failed", "subject", jm.Subject(), "err", err)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Debug("bus: watch", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", b.StreamName(stream), err)
	}
	return b.supervise(ctx, cc, &g)
}
