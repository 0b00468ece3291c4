package httpapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/task"
	"github.com/perkhq/perk/internal/tenant"
)

// TaskPath is the {task_id} of task routes: the task's config key.
type TaskPath struct {
	TaskID string `path:"task_id" doc:"The task's key (config kind task)"`
}

// UserTaskPath is the {user_id} and {task_id} of a user's task.
type UserTaskPath struct {
	UserPath
	TaskPath
}

// UserTaskIDPath is the {user_task_id} of user task routes.
type UserTaskIDPath struct {
	UserTaskID string `path:"user_task_id" doc:"The user task's id (ut_…)"`
}

type listTasksIn struct {
	UserPath
	Filter string `query:"filter" enum:"available,claimed,done," doc:"available (can start now), claimed (in progress) or done (finished this period); default every visible task"`
	Lang   string `query:"lang" enum:"en,zh-CN," doc:"Language of titles and descriptions (default en)"`
}

type taskViewsOut struct {
	Body struct {
		Items []task.TaskView `json:"items"`
	}
}

type taskDetailOut struct{ Body task.TaskDetail }

type userTaskOut struct{ Body task.UserTask }

type completeTaskIn struct {
	UserTaskPath
	Body struct {
		BusinessID string          `json:"business_id" doc:"Your id of what was done (an order, a survey …): the receipt is idempotent on it"`
		Payload    json.RawMessage `json:"payload,omitempty" doc:"What was done, a JSON object; the same business_id with another payload is refused"`
	}
}

type completionOut struct{ Body task.Completion }

type makeUpIn struct {
	UserTaskPath
	Body struct {
		Day string `json:"day" doc:"The missed day, YYYY-MM-DD in the merchant's time zone, within the last 31 days"`
	}
}

type streakOut struct{ Body task.StreakView }

type terminateTaskIn struct {
	TaskPath
	Body *struct {
		Reason string `json:"reason,omitempty" maxLength:"200" doc:"Why, recorded on every user task it closes"`
	}
}

type terminatedOut struct {
	Body struct {
		Closed int `json:"closed" doc:"How many claimed user tasks were moved to terminated"`
	}
}

type taskStatsOut struct{ Body task.Stats }

type userTasksIn struct {
	UserPath
	ListQuery
}

type userTaskPageOut struct{ Body task.Page }

type replayedOut struct {
	Body struct {
		Replayed int `json:"replayed" doc:"How many failed user tasks had their grants retried"`
	}
}

// taskBodyFields are the request body members of task writes, for locating problems.
var taskBodyFields = []string{"business_id", "payload", "day", "reason"}

// registerTaskRoutes adds the task center: a user's tasks, claim, completion receipts and make-up
// cards (C-end, with a key or a user token), and the merchant's terminate, stats and replays.
// Definitions are config resources (/v1/config/task/…).
func (s *Server) registerTaskRoutes(svc *task.Service) {
	tags := []string{"Tasks"}
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-tasks", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/tasks", Summary: "A user's tasks now: progress, stage, reward preview, time left",
		Tags: tags}, Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *listTasksIn) (*taskViewsOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			views, err := svc.List(ctx, task.ListParams{TenantID: p.TenantID, UserID: userID, Filter: in.Filter, Lang: in.Lang})
			out := &taskViewsOut{}
			out.Body.Items = views
			return out, locate(err)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-user-task", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/tasks/{task_id}", Summary: "One of a user's tasks, with its history", Tags: tags},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *UserTaskPath) (*taskDetailOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			d, err := svc.Get(ctx, p.TenantID, userID, in.TaskID)
			return &taskDetailOut{Body: d}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "claim-task", Method: http.MethodPost,
		Path: "/v1/users/{user_id}/tasks/{task_id}/claim", Summary: "Claim a task for the current period", Tags: tags},
		Access: AccessUserWrite},
		func(ctx context.Context, p tenant.Principal, in *UserTaskPath) (*userTaskOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			ut, err := svc.Claim(ctx, task.ClaimParams{TenantID: p.TenantID, UserID: userID, Task: in.TaskID})
			return &userTaskOut{Body: ut}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "complete-task", Method: http.MethodPost,
		Path: "/v1/users/{user_id}/tasks/{task_id}/complete", Summary: "Completion receipt: count one completion now and answer the granted rewards",
		Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *completeTaskIn) (*completionOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			c, err := svc.Complete(ctx, task.CompleteParams{TenantID: p.TenantID, UserID: userID, Task: in.TaskID,
				BusinessID: in.Body.BusinessID, Payload: in.Body.Payload})
			return &completionOut{Body: c}, locate(err, taskBodyFields...)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "make-up-streak-day", Method: http.MethodPost,
		Path: "/v1/users/{user_id}/tasks/{task_id}/makeup", Summary: "Fill a missed streak day with a make-up card (补签)",
		Tags: tags}, Access: AccessUserWrite},
		func(ctx context.Context, p tenant.Principal, in *makeUpIn) (*streakOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			v, err := svc.MakeUp(ctx, task.MakeUpParams{TenantID: p.TenantID, UserID: userID, Task: in.TaskID, Day: in.Body.Day})
			return &streakOut{Body: v}, locate(err, taskBodyFields...)
		})
	s.registerTaskAdminRoutes(svc, tags)
}

func (s *Server) registerTaskAdminRoutes(svc *task.Service, tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "terminate-task", Method: http.MethodPost,
		Path: "/v1/tasks/{task_id}/terminate", Summary: "Stop a task: archive it and close its in-flight user tasks",
		Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *terminateTaskIn) (*terminatedOut, error) {
			reason := ""
			if in.Body != nil {
				reason = in.Body.Reason
			}
			n, err := svc.Terminate(ctx, task.TerminateParams{TenantID: p.TenantID, Task: in.TaskID, Reason: reason, Actor: actor(p)})
			out := &terminatedOut{}
			out.Body.Closed = n
			return out, locate(err, taskBodyFields...)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-task-stats", Method: http.MethodGet,
		Path: "/v1/tasks/{task_id}/stats", Summary: "A task's claimed, completed, rewarded, failed user tasks and reward cost",
		Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *TaskPath) (*taskStatsOut, error) {
			st, err := svc.Stats(ctx, p.TenantID, in.TaskID)
			return &taskStatsOut{Body: st}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "replay-failed-tasks", Method: http.MethodPost,
		Path: "/v1/tasks/{task_id}/replay-failed", Summary: "Retry the grants of every failed user task of a task",
		Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *TaskPath) (*replayedOut, error) {
			n, err := svc.ReplayFailed(ctx, p.TenantID, in.TaskID)
			out := &replayedOut{}
			out.Body.Replayed = n
			return out, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-task-records", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/user-tasks", Summary: "Every user task of a user, all periods, newest first",
		Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *userTasksIn) (*userTaskPageOut, error) {
			page, err := svc.UserTasks(ctx, p.TenantID, in.UserID, in.Cursor, in.Limit)
			return &userTaskPageOut{Body: page}, locate(err)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-user-task-record", Method: http.MethodGet,
		Path: "/v1/user-tasks/{user_task_id}", Summary: "Get a user task", Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *UserTaskIDPath) (*userTaskOut, error) {
			ut, err := svc.UserTaskByID(ctx, p.TenantID, in.UserTaskID)
			return &userTaskOut{Body: ut}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "replay-user-task", Method: http.MethodPost,
		Path: "/v1/user-tasks/{user_task_id}/replay", Summary: "Retry a failed user task's grants", Tags: tags},
		Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *UserTaskIDPath) (*userTaskOut, error) {
			ut, err := svc.Replay(ctx, p.TenantID, in.UserTaskID)
			return &userTaskOut{Body: ut}, err
		})
}
