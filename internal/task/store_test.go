package task_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/task"
)

// TestSaveUserTasksChecksRevision: a user task written since it was read is not overwritten,
// whether the write changes its progress only (on SQLite, a narrow update) or its state too (the
// upsert): the stale write fails as a race, which the transaction runs again, and the row keeps
// the first write.
func TestSaveUserTasksChecksRevision(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "ten-shares", spec(`{'kind':'one_off','trigger':{'event_types':['share']},
			'metric':{'type':'count'},'stages':[{'target':10,'rewards':[{'type':'points','amount':10}]}],
			'title':{'en':'Ten shares'}}`))
		b.apply(t, event(alice, "share", "", start))
		load := func() *task.UserTask {
			var ut *task.UserTask
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) (err error) {
				ut, err = task.LoadUserTask(ctx, tx, shop, alice, "ten-shares", task.PeriodOnce)
				return err
			}))
			require.NotNil(t, ut)
			return ut
		}
		save := func(ut *task.UserTask) (err error) {
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
				err = task.SaveUserTasks(ctx, tx, ut)
				return nil
			}))
			return err
		}
		for _, tc := range []struct {
			name   string
			change func(ut *task.UserTask, n int64)
		}{
			{"progress", func(ut *task.UserTask, n int64) { ut.Progress = n }},
			{"state", func(ut *task.UserTask, n int64) { ut.Progress, ut.State, ut.Reason = n, task.StateTerminated, "stop" }},
		} {
			first, stale := load(), load()
			rev := first.Rev()
			tc.change(first, 5)
			require.NoError(t, save(first), tc.name)
			require.Equal(t, rev+1, first.Rev(), tc.name)
			tc.change(stale, 7)
			require.ErrorIs(t, save(stale), sqldb.ErrBusy, tc.name)
			got := load()
			require.EqualValues(t, 5, got.Progress, tc.name)
			require.Equal(t, rev+1, got.Rev(), tc.name)
			require.Equal(t, first.State, got.State, tc.name)
		}
	})
}
