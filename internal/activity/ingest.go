package activity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Consume starts the durable consumer "activity" on the whole DOMAIN stream. Events arriving
// together (up to Options.MaxBatch) are recorded in one transaction (bus.ConsumeBatch) and
// acknowledged once it has committed; a redelivered event finds its record and adds nothing. An
// undecodable message is terminated, a malformed envelope is dropped, both counted; a batch that
// fails is retried message by message, so neither holds up the messages around it.
//
// The consumer stops when ctx is done or stop is called; stop waits for the batch in hand.
func (s *Service) Consume(ctx context.Context) (stop func(), err error) {
	if s.bus == nil {
		return nil, errors.New("activity: consume: the service has no bus")
	}
	opts := bus.ConsumerOptions{Stream: bus.Domain, Name: ConsumerName, BatchSize: s.opts.MaxBatch,
		MaxAckPending: max(1000, 4*s.opts.MaxBatch)}
	stop, err = s.bus.ConsumeBatch(ctx, opts, s.handle)
	if err != nil {
		return nil, fmt.Errorf("activity: consume: %w", err)
	}
	return stop, nil
}

// errSplit asks the bus to retry a batch message by message: one of them cannot be recorded.
var errSplit = errors.New("activity: a message of the batch cannot be recorded; retrying one by one")

// handle records a batch of DOMAIN messages in one transaction. Its skip counts are added only
// when it succeeds, so a batch retried message by message counts each message once.
func (s *Service) handle(ctx context.Context, msgs []bus.Msg) error {
	recs := make([]Record, 0, len(msgs))
	var skipped []string
	for _, m := range msgs {
		e, err := bus.DecodeEvent(m)
		if err != nil {
			if len(msgs) > 1 {
				return errSplit
			}
			s.metrics.skipped.WithLabelValues(reasonUndecodable).Inc()
			return bus.Permanent(err)
		}
		rec, err := recordOf(e)
		switch {
		case err != nil:
			skipped = append(skipped, reasonMalformed)
			s.log.Warn("activity: malformed event dropped", "subject", m.Subject, "msg_id", m.ID, "err", err)
		case s.expired(rec):
			skipped = append(skipped, reasonExpired)
		default:
			recs = append(recs, rec)
		}
	}
	if _, err := s.insert(ctx, recs); err != nil {
		if len(msgs) > 1 {
			return errSplit
		}
		return settle(err)
	}
	for _, reason := range skipped {
		s.metrics.skipped.WithLabelValues(reason).Inc()
	}
	if len(recs) > 0 {
		s.metrics.lag.Set(max(s.clock.Now().Sub(recs[len(recs)-1].OccurredAt).Seconds(), 0))
	}
	return nil
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
