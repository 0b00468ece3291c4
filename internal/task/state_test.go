package task_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/task"
)

// TestStateMachine checks every pair of states: the legal transitions pass, every other one is a
// Conflict naming both states.
func TestStateMachine(t *testing.T) {
	t.Parallel()
	states := []task.State{task.StateClaimed, task.StateCompleted, task.StateRewarded, task.StateFailed,
		task.StateExpired, task.StateTerminated}
	legal := map[[2]task.State]bool{
		{task.StateClaimed, task.StateCompleted}:    true,
		{task.StateClaimed, task.StateExpired}:      true,
		{task.StateClaimed, task.StateTerminated}:   true,
		{task.StateCompleted, task.StateRewarded}:   true,
		{task.StateCompleted, task.StateFailed}:     true,
		{task.StateCompleted, task.StateTerminated}: true,
		{task.StateFailed, task.StateRewarded}:      true,
		{task.StateFailed, task.StateTerminated}:    true,
	}
	n := 0
	for _, from := range states {
		require.True(t, from.Valid())
		for _, to := range states {
			err := task.CheckTransition(from, to)
			if legal[[2]task.State{from, to}] {
				require.NoError(t, err, "%s → %s", from, to)
				n++
				continue
			}
			p := requireProblem(t, err, problem.KindConflict, "task-illegal-transition")
			require.Equal(t, from, p.Extensions["from"])
			require.Equal(t, to, p.Extensions["to"])
		}
	}
	require.Equal(t, len(legal), n)
	requireProblem(t, task.CheckTransition("", task.StateClaimed), problem.KindConflict)
	require.False(t, task.State("done").Valid())
}
