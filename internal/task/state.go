package task

import (
	"slices"

	"github.com/perkhq/perk/internal/platform/problem"
)

// transitions lists, for each state, the states it may move to. rewarded, expired and terminated
// are final.
var transitions = map[State][]State{
	StateClaimed:   {StateCompleted, StateExpired, StateTerminated},
	StateCompleted: {StateRewarded, StateFailed, StateTerminated},
	StateFailed:    {StateRewarded, StateTerminated},
}

// CheckTransition is the user-task state machine: nil when a user task may move from one state to
// the other, else a problem Conflict (code task-illegal-transition).
func CheckTransition(from, to State) error {
	if slices.Contains(transitions[from], to) {
		return nil
	}
	return problem.Conflict("a user task cannot go from %s to %s", from, to).
		WithCode("task-illegal-transition").With("from", from).With("to", to)
}

// eventType is the domain event announcing a move to state to.
func eventType(to State) string {
	switch to {
	case StateCompleted:
		return EventCompleted
	case StateRewarded:
		return EventRewarded
	case StateFailed:
		return EventFailed
	case StateExpired:
		return EventExpired
	case StateTerminated:
		return EventTerminated
	}
	return EventClaimed
}
