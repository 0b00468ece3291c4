package task

import (
	"context"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// LoadUserTask reads one user task row in a write transaction, as a batch does.
func LoadUserTask(ctx context.Context, tx *sqldb.Tx, tenant, user, task, periodKey string) (*UserTask, error) {
	uts, err := loadUserTasks(ctx, tx, tx.Dialect(), []rowKey{{tenant, user, task, periodKey}}, true)
	if err != nil || len(uts) == 0 {
		return nil, err
	}
	return uts[0], nil
}

// SaveUserTasks writes user tasks as a batch does.
func SaveUserTasks(ctx context.Context, tx *sqldb.Tx, uts ...*UserTask) error {
	return saveUserTasks(ctx, tx, tx.Dialect(), uts)
}

// Rev is the user task's revision as last read or written.
func (ut *UserTask) Rev() int64 { return ut.rev }
