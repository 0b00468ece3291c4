package coupon

import (
	"context"
	"errors"
	"fmt"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
)

// ConsumerName is the durable consumer of the EVENTS stream that runs the issue rules.
const ConsumerName = "coupon-issue-rules"

// HandleBehaviour runs the tenant's enabled issue rules for the event's type: each whose condition
// holds issues its template to the event's user with the business key "rule/<rule key>/<event
// key>", so a redelivered event issues nothing new. A limit that refuses (sold out, per-user limit)
// or a template that is no longer published or has ended is logged and skipped; other failures are returned
// for a retry. Rules come from the Snapshot; without one nothing runs.
func (s *Service) HandleBehaviour(ctx context.Context, e bus.Behaviour) error {
	if s.opts.Snapshot == nil {
		return nil
	}
	idx, _ := s.opts.Snapshot.Index(e.TenantID, KindIssueRule).(ruleIndex)
	matching := idx[e.Type]
	if len(matching) == 0 {
		return nil
	}
	vars, err := behaviourVars(e)
	if err != nil {
		return bus.Permanent(err)
	}
	var errs []error
	for _, r := range matching {
		if err := s.runRule(ctx, r, e, vars); err != nil {
			errs = append(errs, fmt.Errorf("issue rule %s: %w", r.Key, err))
		}
	}
	return errors.Join(errs...)
}

// runRule evaluates one rule's condition and issues its coupon.
func (s *Service) runRule(ctx context.Context, r liveRule, e bus.Behaviour, vars map[string]any) error {
	if r.Rule.Condition != "" {
		prog, err := s.programs.Get(ruleEnv, rules.CacheKey{Resource: KindIssueRule + "/" + r.ResourceID,
			Version: int64(r.Version)}, r.Rule.Condition, rules.BoolType)
		if err != nil { // published conditions compile: this one no longer does on this node
			s.log.Error("coupon: issue rule condition does not compile; the rule is skipped",
				"tenant", e.TenantID, "rule", r.Key, "version", r.Version, "err", err)
			return nil
		}
		ok, err := prog.EvalBool(ctx, vars)
		if err != nil {
			s.log.Warn("coupon: issue rule condition failed; the rule is skipped for this event",
				"tenant", e.TenantID, "rule", r.Key, "event", e.ID, "err", err)
			return nil
		}
		if !ok {
			return nil
		}
	}
	out, err := s.Issue(ctx, IssueParams{TenantID: e.TenantID, Template: r.Rule.Template, UserIDs: []string{e.UserID},
		BusinessKey: "rule/" + r.Key + "/" + e.Key(), SourceKind: SourceIssueRule, SourceID: r.Key + "/" + e.Key()})
	if problem.Is(err, problem.KindNotFound) || problem.Is(err, problem.KindInvalid) || problem.Is(err, problem.KindConflict) {
		s.log.Warn("coupon: issue rule cannot issue", "tenant", e.TenantID, "rule", r.Key, "event", e.ID, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if res := out.Results[0]; res.Error != nil {
		s.log.Info("coupon: issue rule refused", "tenant", e.TenantID, "rule", r.Key, "user", e.UserID,
			"code", res.Error.Code)
	}
	return nil
}

// behaviourVars are the CEL variables of an issue rule condition.
func behaviourVars(e bus.Behaviour) (map[string]any, error) {
	data := map[string]any{}
	if len(e.Data) > 0 && string(e.Data) != "null" {
		v, err := rules.DecodeJSON(e.Data)
		if err != nil {
			return nil, fmt.Errorf("coupon: event %s data: %w", e.ID, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("coupon: event %s data is not a JSON object", e.ID)
		}
		data = m
	}
	return map[string]any{
		"event": map[string]any{"id": e.ID, "type": e.Type, "source": e.Source, "time": e.Time, "data": data},
		"user":  map[string]any{"id": e.UserID},
	}, nil
}

// Consume starts the durable consumer "coupon-issue-rules" on the EVENTS stream, which hands every
// behaviour event to HandleBehaviour. Instances on every node share the events. A message that is
// not a behaviour event is terminated.
func (s *Service) Consume(ctx context.Context, b *bus.Bus) (stop func(), err error) {
	opts := bus.ConsumerOptions{Stream: bus.Events, Name: ConsumerName}
	return b.Consume(ctx, opts, func(ctx context.Context, m bus.Msg) error {
		e, err := bus.DecodeBehaviour(m)
		if err != nil {
			return bus.Permanent(err)
		}
		return s.HandleBehaviour(ctx, e)
	})
}
