package activity

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// A record the database refuses fails alone: the others of its batch are written and acknowledged.
func TestOneBadRecordDoesNotFailItsBatch(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		refuse(t, db, "poison.event")
		s := New(db, nil, Options{})
		w := &writer{s: s}
		var batch []*pending
		for i, typ := range []string{"grant.succeeded", "poison.event", "grant.failed", "grant.succeeded"} {
			batch = append(batch, &pending{done: make(chan error, 1), rec: Record{ID: fmt.Sprint("evt_", i),
				TenantID: "mch_a", UserID: "u1", Type: typ, OccurredAt: time.Now().UTC()}})
		}
		batch[3].rec.ID = batch[0].rec.ID // a duplicate inside the batch is no error either
		w.commit(ctx, batch)

		for i, p := range batch {
			err := <-p.done
			if i != 1 {
				require.NoError(t, err, "record %d", i)
				continue
			}
			require.Error(t, err)
			// PostgreSQL says check_violation: dropping is right. SQLite's trigger error is not
			// classified: the message is retried later, without holding up the others.
			require.Equal(t, db.Dialect() == sqldb.Postgres, errors.Is(err, bus.ErrPermanent), "%v", err)
		}
		var n int
		require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM activity_records`).Scan(&n))
		require.Equal(t, 2, n)
	})
}

// refuse makes the database reject records of one type, as a stand-in for any record-level failure.
func refuse(t *testing.T, db *sqldb.DB, eventType string) {
	t.Helper()
	ctx := context.Background()
	stmts := []string{`CREATE TRIGGER activity_refuse BEFORE INSERT ON activity_records
		WHEN NEW.type = '` + eventType + `' BEGIN SELECT RAISE(ABORT, 'refused'); END`}
	if db.Dialect() == sqldb.Postgres {
		stmts = []string{
			`CREATE FUNCTION activity_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF NEW.type = '` + eventType + `' THEN
					RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
				END IF;
				RETURN NEW;
			END $$`,
			`CREATE TRIGGER activity_refuse BEFORE INSERT ON activity_records
				FOR EACH ROW EXECUTE FUNCTION activity_refuse()`,
		}
	}
	for _, stmt := range stmts {
		_, err := db.Writer().ExecContext(ctx, stmt)
		require.NoError(t, err)
	}
}
