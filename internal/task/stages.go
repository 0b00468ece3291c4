package task

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"sync"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
)

// ReasonRewardInvalid: a stage's rewards could not be granted (its flow is no longer published);
// the stage completes when the progress moves again after the task is fixed.
const ReasonRewardInvalid = "reward_invalid"

// reach completes every stage the row's progress reaches whose prerequisite is done, in order.
func (b *batch) reach(c *compiled, ut *UserTask) error {
	for i, st := range c.spec.Stages {
		if ut.done&(1<<i) != 0 || ut.Progress < st.Target {
			continue
		}
		if st.After != nil && ut.done&(1<<*st.After) == 0 {
			continue
		}
		ok, err := b.completeStage(c, ut, i)
		if err != nil || !ok {
			return err
		}
	}
	return nil
}

// completeStage takes the stage's cost from the budget, prepares its grant (written by flush)
// and moves the row on: completed after the last stage, else a progressed event. It reports false
// when the budget (or the stage's rewards) refused the completion: the row stays claimed, with the
// reason recorded and announced once.
func (b *batch) completeStage(c *compiled, ut *UserTask, i int) (bool, error) {
	st := c.spec.Stages[i]
	final := bits.OnesCount64(ut.done)+1 == len(c.spec.Stages)
	cost := b.s.cost(ut.TenantID, st.Rewards, st.Flow)
	if budget := c.spec.Limits.Budget; budget != nil {
		completions := int64(0)
		if final {
			completions = 1
		}
		ok, err := chargeBudget(b.ctx, b.tx, ut.TenantID, ut.Task, budget, completions, cost.Points, sqldb.Micros(b.now))
		if err != nil {
			return false, err
		}
		if !ok {
			b.refuse(ut, ReasonBudget)
			return false, nil
		}
	}
	params := map[string]any{"task": ut.Task, "version": ut.TaskVersion, "period": ut.PeriodKey, "stage": i,
		"user_task_id": ut.ID}
	g, err := b.grant(ut.TenantID, ut.UserID, ut.ID, i, st.Rewards, st.Flow, params)
	if _, bad := problem.As(err); bad {
		b.s.log.Error("task: a stage's rewards cannot be granted", "task", ut.Task, "version", ut.TaskVersion,
			"stage", i, "err", err)
		b.refuse(ut, ReasonRewardInvalid)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ut.done |= 1 << i
	ut.Stage, ut.StagesDone, ut.Reason = bits.OnesCount64(ut.done), stagesOf(ut.done), ""
	b.touch(ut)
	b.stages++
	b.grants = append(b.grants, grantRow{tenant: ut.TenantID, user: ut.UserID, grantID: g.ID(), userTaskID: ut.ID,
		task: ut.Task, kind: grantStage, seq: i, state: grantPending, cost: cost, req: len(b.prepared) - 1})
	if !final {
		b.events = append(b.events, b.s.event(EventProgressed, ut, "", []string{g.ID()}))
		return true, nil
	}
	if err := b.move(ut, StateCompleted, []string{g.ID()}); err != nil {
		return false, err
	}
	return true, b.failIfEarlierFailed(ut)
}

// failIfEarlierFailed moves a just-completed staged row to failed when an earlier stage's grant
// failed already.
func (b *batch) failIfEarlierFailed(ut *UserTask) error {
	if ut.Stage < 2 || ut.inserted {
		return nil
	}
	rows, err := b.grantRowsOf(ut)
	if err != nil {
		return err
	}
	for _, g := range rows {
		if g.kind == grantStage && (g.state == grantFailed || g.state == grantDead) {
			return b.move(ut, StateFailed, []string{g.grantID})
		}
	}
	return nil
}

// move applies a transition to a row of the batch and queues its event.
func (b *batch) move(ut *UserTask, to State, grantIDs []string) error {
	b.touch(ut)
	e, err := b.s.move(ut, to, grantIDs)
	if err != nil {
		return err
	}
	b.events = append(b.events, e)
	b.moves = append(b.moves, to)
	return nil
}

// refuse records why a completion was refused; the event announcing it is written once per reason.
func (b *batch) refuse(ut *UserTask, reason string) {
	b.refused++
	if ut.Reason == reason {
		return
	}
	ut.Reason = reason
	b.touch(ut)
	b.events = append(b.events, b.s.event(EventRefused, ut, "", nil))
}

// streakRewards grants the streak rewards of the lengths a streak went through, (prev, cur].
func (b *batch) streakRewards(c *compiled, r *streakRow, ut *UserTask, prev, cur int) error {
	opt := c.spec.Streak
	for n := prev + 1; n <= cur; n++ {
		i, ok := opt.rewardAt(n)
		if !ok {
			continue
		}
		sr := opt.Rewards[i]
		cost := b.s.cost(r.tenant, sr.Rewards, sr.Flow)
		if budget := c.spec.Limits.Budget; budget != nil {
			ok, err := chargeBudget(b.ctx, b.tx, r.tenant, r.task, budget, 0, cost.Points, sqldb.Micros(b.now))
			if err != nil {
				return err
			}
			if !ok {
				b.refused++
				continue
			}
		}
		utID := ""
		if ut != nil {
			utID = ut.ID
		}
		params := map[string]any{"task": r.task, "streak": n, "user_task_id": utID}
		g, err := b.grant(r.tenant, r.user, r.source(), n, sr.Rewards, sr.Flow, params)
		if _, bad := problem.As(err); bad {
			b.s.log.Error("task: a streak reward cannot be granted", "task", r.task, "day", n, "err", err)
			continue
		}
		if err != nil {
			return err
		}
		b.grants = append(b.grants, grantRow{tenant: r.tenant, user: r.user, grantID: g.ID(), userTaskID: utID,
			task: r.task, kind: grantStreak, seq: n, state: grantPending, cost: cost, req: len(b.prepared) - 1})
	}
	return nil
}

// grant prepares a grant of the batch (checked, with its id); flush writes the batch's grants
// together (createGrants).
func (b *batch) grant(tenant, user, source string, seq int, rewards []reward.Reward, flow string, params map[string]any) (reward.Prepared, error) {
	p, err := b.s.opts.Rewards.Prepare(b.ctx, reward.CreateParams{TenantID: tenant, UserID: user,
		SourceKind: SourceKind, SourceID: source, Seq: seq, Flow: flow, Rewards: rewards, Params: mustJSON(params)})
	if err != nil {
		return reward.Prepared{}, err
	}
	b.prepared = append(b.prepared, p)
	return p, nil
}

// createGrants writes the batch's grants in its transaction (reward.CreateManyTx): those whose
// flow only writes to the database are delivered in it, the others run right after the commit.
// A stage grant delivered in the transaction is recorded succeeded, and a user task completed by
// the batch whose stage grants all succeeded moves on to rewarded at once: the grant.succeeded
// events that follow find nothing left to do.
func (b *batch) createGrants() error {
	if len(b.prepared) == 0 {
		return nil
	}
	gs, err := b.s.opts.Rewards.CreateManyTx(b.ctx, b.tx, b.prepared)
	if err != nil {
		return err
	}
	var remap map[string]string
	for i := range b.grants {
		row := &b.grants[i]
		g := gs[row.req]
		if g.ID != row.grantID {
			// The source had a grant already: it is the one recorded and announced.
			if remap == nil {
				remap = map[string]string{}
			}
			remap[row.grantID], row.grantID = g.ID, g.ID
		}
		if g.State == reward.StateSucceeded {
			row.state = grantSucceeded
		}
	}
	if remap != nil {
		remapGrantIDs(b.events, remap)
	}
	return b.rewardCompleted()
}

// rewardCompleted moves the user tasks the batch completed to rewarded when every one of their
// stage grants has succeeded (those of earlier batches included).
func (b *batch) rewardCompleted() error {
	stages := map[*UserTask][]grantRow{}
	byID := map[string]*UserTask{}
	for _, ut := range b.order {
		if ut.State == StateCompleted {
			byID[ut.ID] = ut
		}
	}
	for _, g := range b.grants {
		if ut := byID[g.userTaskID]; ut != nil && g.kind == grantStage {
			stages[ut] = append(stages[ut], g)
		}
	}
	for _, ut := range b.order {
		rows, ok := stages[ut]
		if !ok || ut.State != StateCompleted || !allSucceeded(rows) {
			continue
		}
		if len(rows) < ut.Stage && !ut.inserted {
			earlier, err := b.grantRowsOf(ut)
			if err != nil {
				return err
			}
			if !allSucceeded(earlier) {
				continue
			}
			rows = append(rows, earlier...)
		}
		ids := make([]string, 0, len(rows))
		for _, g := range rows {
			if g.kind == grantStage && !slices.Contains(ids, g.grantID) {
				ids = append(ids, g.grantID)
			}
		}
		if err := b.move(ut, StateRewarded, ids); err != nil {
			return err
		}
	}
	return nil
}

// grantRowsOf reads the grants earlier transactions recorded for a user task, once per batch.
func (b *batch) grantRowsOf(ut *UserTask) ([]grantRow, error) {
	if rows, ok := b.earlier[ut.ID]; ok {
		return rows, nil
	}
	rows, err := grantRowsOf(b.ctx, b.tx, ut.TenantID, ut.UserID, ut.ID)
	if err != nil {
		return nil, err
	}
	if b.earlier == nil {
		b.earlier = map[string][]grantRow{}
	}
	b.earlier[ut.ID] = rows
	return rows, nil
}

// allSucceeded reports whether every stage grant among rows has succeeded.
func allSucceeded(rows []grantRow) bool {
	for _, g := range rows {
		if g.kind == grantStage && g.state != grantSucceeded {
			return false
		}
	}
	return true
}

// remapGrantIDs replaces grant ids in the events' data.
func remapGrantIDs(events []bus.Event, remap map[string]string) {
	for i, e := range events {
		var data eventData
		if json.Unmarshal(e.Data, &data) != nil || len(data.GrantIDs) == 0 {
			continue
		}
		changed := false
		for j, id := range data.GrantIDs {
			if to, ok := remap[id]; ok {
				data.GrantIDs[j], changed = to, true
			}
		}
		if changed {
			events[i].Data = mustJSON(data)
		}
	}
}

// flush writes what the batch changed: grants (createGrants), rows, trackers, grant records and events.
func (b *batch) flush() error {
	if err := b.createGrants(); err != nil {
		return err
	}
	if err := saveUserTasks(b.ctx, b.tx, b.s.dialect, b.order); err != nil {
		return err
	}
	var streaks []*streakRow
	for _, r := range b.streaks {
		if r.dirty {
			streaks = append(streaks, r)
		}
	}
	if err := saveStreaks(b.ctx, b.tx, b.s.dialect, streaks); err != nil {
		return err
	}
	if err := insertGrantRows(b.ctx, b.tx, b.s.dialect, b.grants, sqldb.Micros(b.now)); err != nil {
		return err
	}
	if err := b.s.emit(b.ctx, b.tx, b.events); err != nil {
		return err
	}
	moves, stages, refused := b.moves, b.stages, b.refused
	b.tx.AfterCommit(func() {
		for _, to := range moves {
			b.s.metrics.transitions.WithLabelValues(string(to)).Inc()
		}
		b.s.metrics.completions.Add(float64(stages))
		b.s.metrics.refused.Add(float64(refused))
	})
	return nil
}

// cost is what a stage's rewards are worth: inline rewards summed, a flow's grant steps summed
// from its live version (conditions are ignored: an upper bound).
func (s *Service) cost(tenant string, rewards []reward.Reward, flow string) Cost {
	var c Cost
	for _, r := range rewards {
		switch r.Type {
		case reward.RewardPoints:
			c.Points += r.Amount
		case reward.RewardGrowth:
			c.Growth += r.Amount
		case reward.RewardCoupon:
			c.Coupons++
		}
	}
	if flow == "" {
		return c
	}
	return c.add(s.flowCost(tenant, flow))
}

var flowCosts sync.Map // "<resource id>@<version>" → Cost

// flowCost sums the grant steps of a flow's live version (the tenant's, else the platform's).
func (s *Service) flowCost(tenant, key string) Cost {
	p, ok := s.opts.Snapshot.Get(tenant, reward.KindFlow, key)
	if !ok {
		if p, ok = s.opts.Snapshot.Get(catalog.Platform, reward.KindFlow, key); !ok {
			return Cost{}
		}
	}
	cacheKey := p.ResourceID + "@" + strconv.Itoa(p.Version)
	if c, ok := flowCosts.Load(cacheKey); ok {
		return c.(Cost)
	}
	var spec reward.FlowSpec
	var c Cost
	if json.Unmarshal(p.Spec, &spec) == nil {
		for _, st := range spec.Steps {
			var params struct {
				Amount int64 `json:"amount"`
			}
			_ = json.Unmarshal(st.Params, &params)
			switch st.Component {
			case reward.ComponentGrantPoints:
				c.Points += params.Amount
			case reward.ComponentGrantGrowth:
				c.Growth += params.Amount
			case reward.ComponentIssueCoupon:
				c.Coupons++
			}
		}
	}
	flowCosts.Store(cacheKey, c)
	return c
}

// assets names the cost's assets, for Stats.
func (c Cost) assets() map[string]int64 {
	return map[string]int64{ledger.AssetPoints: c.Points, ledger.AssetGrowth: c.Growth, "coupons": c.Coupons}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("task: encode: %v", err))
	}
	return b
}
