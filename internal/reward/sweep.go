package reward

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ConsumerName is the durable name of the asynchronous executor on the DOMAIN stream.
const ConsumerName = "reward-executor"

// Sweep claims up to limit due grants (pending or failed ones whose next attempt has come, and
// running ones whose lease expired — their executor died) and runs them, SweepWorkers at a time.
// Claims are row leases (SKIP LOCKED on PostgreSQL), so every node may sweep at once. limit <= 0
// means SweepBatch. It returns how many grants it claimed; the error joins what went wrong.
func (s *Service) Sweep(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = s.opts.SweepBatch
	}
	grants, err := s.claimDue(ctx, limit)
	if err != nil {
		return 0, err
	}
	s.metrics.claimed.Add(float64(len(grants)))
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.opts.SweepWorkers)
	)
	for _, g := range grants {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.runSafely(ctx, g); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("grant %s: %w", g.ID, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return len(grants), errors.Join(errs...)
}

// runSafely runs a claimed grant; a panic is logged and the grant left to its lease.
func (s *Service) runSafely(ctx context.Context, g Grant) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("reward: execution panicked; the grant's lease will expire", "grant", g.ID, "panic", p,
				"stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	_, err = s.run(ctx, g)
	return err
}

func (s *Service) claimDue(ctx context.Context, limit int) ([]Grant, error) {
	lock := s.db.Dialect().SkipLocked()
	now := s.now()
	token := s.opts.Node + "/sweep-" + ids.Secret(5)
	query := `UPDATE reward_grants SET state = 'running', claimed_by = $1, claimed_until = $2, next_attempt_at = $2,
		updated_at = $3, attempts = attempts + CASE WHEN state = 'running' THEN 1 ELSE 0 END
		WHERE id IN (SELECT id FROM reward_grants WHERE state IN ('pending', 'running', 'failed') AND next_attempt_at <= $3
			ORDER BY next_attempt_at LIMIT $4` + lock + `)
		AND state IN ('pending', 'running', 'failed') AND next_attempt_at <= $3
		RETURNING ` + grantColumns
	var grants []Grant
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		grants = grants[:0]
		rows, err := tx.Query(ctx, query, token, sqldb.Micros(now.Add(s.opts.Lease)), sqldb.Micros(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			g, err := scanGrant(rows)
			if err != nil {
				return err
			}
			grants = append(grants, g)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reward: claim due grants: %w", err)
	}
	for range grants {
		s.metrics.transition(StateRunning)
	}
	return grants, nil
}

// Run sweeps every SweepInterval (at once again after a full batch) until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		n, err := s.Sweep(ctx, 0)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("reward: sweep", "claimed", n, "err", err)
		}
		next := s.opts.SweepInterval
		if n >= s.opts.SweepBatch {
			next = 0
		}
		timer.Reset(next)
	}
}

// Consume starts the asynchronous executor: a durable consumer (ConsumerName) of grant.created on
// the DOMAIN stream that runs each new grant. Grants already run inline are found done (or held)
// and acknowledged; a store failure has the message redelivered. Every node may run it.
func (s *Service) Consume(ctx context.Context, b *bus.Bus) (stop func(), err error) {
	return b.Consume(ctx, bus.ConsumerOptions{Stream: bus.Domain, Name: ConsumerName,
		FilterSubjects: []string{b.EventSubject(EventCreated)}}, func(ctx context.Context, m bus.Msg) error {
		e, err := bus.DecodeEvent(m)
		if err != nil {
			return bus.Permanent(err)
		}
		_, err = s.execute(ctx, e.SourceID)
		if isNotFound(err) {
			return bus.Permanent(err)
		}
		return err
	})
}
