package activity

import (
	"context"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Run consumes the DOMAIN stream (see Consume) and, when Options.Retention is set, prunes records
// past it every Options.PruneInterval, until ctx is done. It returns an error only when the
// consumer cannot start. Every node may run it: the consumer instances share the messages and
// pruners skip each other's rows.
func (s *Service) Run(ctx context.Context) error {
	stop, err := s.Consume(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	defer stop()
	if s.opts.Retention <= 0 {
		<-ctx.Done()
		return nil
	}
	ticker := time.NewTicker(s.opts.PruneInterval)
	defer ticker.Stop()
	for {
		if _, err := s.Prune(ctx, s.opts.Retention, s.opts.PruneBatch); err != nil && ctx.Err() == nil {
			s.log.Warn("activity: prune", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Prune deletes the records whose event occurred more than olderThan ago, batch records per short
// transaction (default 500), and returns how many it deleted. olderThan <= 0 deletes nothing (it is
// "keep forever", as in Options.Retention). It is safe to run on every node at once: on PostgreSQL
// each pruner skips the rows another has locked.
func (s *Service) Prune(ctx context.Context, olderThan time.Duration, batch int) (int, error) {
	if olderThan <= 0 {
		return 0, nil
	}
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	cutoff := sqldb.Micros(s.clock.Now().Add(-olderThan))
	query := `DELETE FROM activity_records WHERE rowid IN (
		SELECT rowid FROM activity_records WHERE occurred_at < $1 LIMIT $2)`
	if s.db.Dialect() == sqldb.Postgres {
		query = `DELETE FROM activity_records WHERE (tenant_id, user_id, id) IN (
			SELECT tenant_id, user_id, id FROM activity_records WHERE occurred_at < $1 LIMIT $2
			FOR UPDATE SKIP LOCKED)`
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var n int64
		err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
			res, err := tx.Exec(ctx, query, cutoff, batch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("activity: prune: %w", err)
		}
		total += int(n)
		s.metrics.pruned.Add(float64(n))
		if n < int64(batch) {
			return total, nil
		}
	}
}
