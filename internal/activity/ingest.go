package activity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Consume starts the durable consumer "activity" on the whole DOMAIN stream: Options.Workers
// instances whose messages one writer records together, several per transaction (a group commit).
// A message is acknowledged only after its record is committed; a redelivered event finds its
// record and adds nothing. An undecodable message is terminated, a malformed envelope is dropped,
// both counted; neither holds up the messages behind it.
//
// The consumer stops when ctx is done or stop is called; stop waits for the messages in hand.
func (s *Service) Consume(ctx context.Context) (stop func(), err error) {
	if s.bus == nil {
		return nil, errors.New("activity: consume: the service has no bus")
	}
	w := s.startWriter(ctx)
	var stops []func()
	stopAll := func() {
		var wg sync.WaitGroup
		for _, stop := range stops {
			wg.Go(stop)
		}
		wg.Wait() // every handler has left: nobody waits for the writer any more
		w.stop()
	}
	opts := bus.ConsumerOptions{Stream: bus.Domain, Name: ConsumerName, BatchSize: 32}
	for range s.opts.Workers {
		stop, err := s.bus.Consume(ctx, opts, w.handle)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("activity: consume: %w", err)
		}
		stops = append(stops, stop)
	}
	var once sync.Once
	stopped := make(chan struct{})
	stop = func() { once.Do(func() { stopAll(); close(stopped) }) }
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-stopped:
		}
	}()
	return stop, nil
}

// Write records events directly, in one transaction, and returns how many records it added (events
// recorded before add nothing). It is for backfills and tests: producers publish domain events
// through the outbox (bus.EnqueueEvent) and the consumer records them. An invalid event fails the
// whole call with a problem error.
func (s *Service) Write(ctx context.Context, events ...bus.Event) (int, error) {
	recs := make([]Record, 0, len(events))
	for i, e := range events {
		rec, err := recordOf(e)
		if err != nil {
			return 0, problem.Invalid("event %d: %v", i, err)
		}
		recs = append(recs, rec)
	}
	return s.insert(ctx, recs)
}

// pending is a record waiting for the writer, and where its outcome goes.
type pending struct {
	rec  Record
	done chan error
}

// writer records what the consumer instances hand it, as many per transaction as are waiting.
type writer struct {
	s      *Service
	queue  chan *pending
	cancel context.CancelFunc
	done   chan struct{}
}

// startWriter starts a writer, which runs until its stop is called. Its transactions do not end
// with ctx: a batch in hand is finished.
func (s *Service) startWriter(ctx context.Context) *writer {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &writer{s: s, queue: make(chan *pending, s.opts.MaxBatch), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.run(runCtx)
	}()
	return w
}

// stop ends the writer after the batch in hand. Records still queued are not written: call it once
// no handler waits.
func (w *writer) stop() {
	w.cancel()
	<-w.done
}

// handle is the consumer's handler: decode, check, then wait for the record to be committed.
func (w *writer) handle(ctx context.Context, m bus.Msg) error {
	s := w.s
	e, err := bus.DecodeEvent(m)
	if err != nil {
		s.metrics.skipped.WithLabelValues(reasonUndecodable).Inc()
		return bus.Permanent(err)
	}
	rec, err := recordOf(e)
	if err != nil {
		s.metrics.skipped.WithLabelValues(reasonMalformed).Inc()
		s.log.Warn("activity: malformed event dropped", "subject", m.Subject, "msg_id", m.ID, "err", err)
		return nil
	}
	if s.expired(rec) {
		s.metrics.skipped.WithLabelValues(reasonExpired).Inc()
		return nil
	}
	p := &pending{rec: rec, done: make(chan error, 1)}
	select {
	case w.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The record may still be committed; the redelivery then finds it.
		return ctx.Err()
	}
}

// run takes whatever is waiting, up to MaxBatch, writes it in one transaction and reports back,
// until ctx is done.
func (w *writer) run(ctx context.Context) {
	batch := make([]*pending, 0, w.s.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case p := <-w.queue:
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
	fill:
		for len(batch) < w.s.opts.MaxBatch {
			select {
			case p := <-w.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		w.commit(ctx, batch)
	}
}

// commit writes a batch. If the batch fails, each record is tried on its own, so one bad record
// cannot hold up the others.
func (w *writer) commit(ctx context.Context, batch []*pending) {
	recs := make([]Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	_, err := w.s.insert(ctx, recs)
	if err == nil {
		w.s.metrics.lag.Set(max(w.s.clock.Now().Sub(recs[len(recs)-1].OccurredAt).Seconds(), 0))
	}
	if err == nil || len(batch) == 1 {
		for _, p := range batch {
			p.done <- settle(err)
		}
		return
	}
	for _, p := range batch {
		_, err := w.s.insert(ctx, []Record{p.rec})
		p.done <- settle(err)
	}
}

// settle turns a write error into the handler's answer: a record the database refuses for its
// content is dropped (bus.Permanent); anything else is retried.
func settle(err error) error {
	if errors.Is(err, sqldb.ErrCheck) {
		return bus.Permanent(err)
	}
	return err
}

// insertChunk bounds the rows of one INSERT (PostgreSQL takes at most 65535 parameters).
const insertChunk = 128

const recordColumns = `id, tenant_id, user_id, type, source_kind, source_id, occurred_at, recorded_at, data`

// insert writes records in one transaction, skipping those that exist, and returns how many it
// added.
func (s *Service) insert(ctx context.Context, recs []Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	var added int
	now := s.clock.Now().UTC()
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		added = 0
		for start := 0; start < len(recs); start += insertChunk {
			n, err := insertRows(ctx, tx, now, recs[start:min(start+insertChunk, len(recs))])
			if err != nil {
				return err
			}
			added += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("activity: write records: %w", err)
	}
	s.metrics.batch.Observe(float64(len(recs)))
	s.metrics.written.Add(float64(added))
	s.metrics.skipped.WithLabelValues(reasonDuplicate).Add(float64(len(recs) - added))
	return added, nil
}

func insertRows(ctx context.Context, tx *sqldb.Tx, now time.Time, recs []Record) (int, error) {
	const cols = 9
	args := make([]any, 0, len(recs)*cols)
	for _, r := range recs {
		args = append(args, r.ID, r.TenantID, r.UserID, r.Type, r.SourceKind, r.SourceID,
			sqldb.Micros(r.OccurredAt), sqldb.Micros(now), string(r.Data))
	}
	q := `INSERT INTO activity_records (` + recordColumns + `) VALUES ` + tx.Dialect().Tuples(len(recs), cols) +
		` ON CONFLICT DO NOTHING`
	res, err := tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// expired reports whether a record is already past the retention: it would be pruned at once.
func (s *Service) expired(r Record) bool {
	return s.opts.Retention > 0 && r.OccurredAt.Before(s.clock.Now().Add(-s.opts.Retention))
}

// Limits of the envelope fields a record keeps.
const (
	maxIDLen     = 128
	maxTypeLen   = 128
	maxSourceLen = 256
)

var eventTypePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

// recordOf checks an event envelope and turns it into a record.
func recordOf(e bus.Event) (Record, error) {
	var problems []string
	check := func(name, value string, required bool, maxLen int) {
		switch {
		case value == "" && required:
			problems = append(problems, name+" is missing")
		case len(value) > maxLen:
			problems = append(problems, fmt.Sprintf("%s is longer than %d bytes", name, maxLen))
		case !printable(value):
			problems = append(problems, name+" holds control characters or invalid UTF-8")
		}
	}
	check("id", e.ID, true, maxIDLen)
	check("tenant_id", e.TenantID, true, maxIDLen)
	check("user_id", e.UserID, false, maxIDLen)
	check("source_kind", e.SourceKind, false, maxIDLen)
	check("source_id", e.SourceID, false, maxSourceLen)
	if len(e.Type) > maxTypeLen || !eventTypePattern.MatchString(e.Type) {
		problems = append(problems, fmt.Sprintf("type %.140q is not a dotted lower-case event type", e.Type))
	}
	if e.Time.IsZero() {
		problems = append(problems, "time is missing")
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		problems = append(problems, "data is not JSON")
	}
	if len(problems) > 0 {
		return Record{}, fmt.Errorf("bad event envelope: %s", strings.Join(problems, "; "))
	}
	return Record{ID: e.ID, TenantID: e.TenantID, UserID: e.UserID, Type: e.Type, SourceKind: e.SourceKind,
		SourceID: e.SourceID, OccurredAt: e.Time.UTC().Truncate(time.Microsecond), Data: e.Data}, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
