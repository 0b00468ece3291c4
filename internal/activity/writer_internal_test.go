package activity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// A record the database refuses fails its batch, which the bus then retries message by message
// (as bus.ConsumeBatch does): the others are written, the refused one fails alone.
func TestOneBadRecordDoesNotFailItsBatch(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		refuse(t, db, "poison.event")
		s := New(db, nil, Options{})
		var batch []bus.Msg
		for i, typ := range []string{"grant.succeeded", "poison.event", "grant.failed", "grant.succeeded"} {
			id := fmt.Sprint("evt_", i)
			if i == 3 {
				id = "evt_0" // a duplicate inside the batch is no error either
			}
			raw, err := json.Marshal(bus.Event{ID: id, TenantID: "mch_a", UserID: "u1", Type: typ,
				Time: time.Now().UTC(), Data: json.RawMessage(`{}`)})
			require.NoError(t, err)
			batch = append(batch, bus.Msg{ID: id, Subject: "domain." + typ, Data: raw})
		}
		require.ErrorIs(t, s.handle(ctx, batch), errSplit)
		for i, m := range batch {
			err := s.handle(ctx, []bus.Msg{m})
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
