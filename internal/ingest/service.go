package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
)

// Service takes behaviour events in and makes them durable on the EVENTS stream. It is safe for
// concurrent use.
type Service struct {
	bus     *bus.Bus
	opts    Options
	log     *slog.Logger
	metrics *metrics
}

// New returns a Service publishing to b.
func New(b *bus.Bus, opts Options) *Service {
	opts = opts.withDefaults()
	return &Service{bus: b, opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registerer)}
}

// MaxBodyBytes is the largest request body worth reading: MaxBatch events of MaxEventBytes,
// capped at MaxBodyCap (and never below one event).
func (s *Service) MaxBodyBytes() int64 {
	limit := int64(s.opts.MaxBatch) * int64(s.opts.MaxEventBytes)
	return max(min(limit, MaxBodyCap), int64(s.opts.MaxEventBytes))
}

// MaxBatch is the most events one request may carry.
func (s *Service) MaxBatch() int { return s.opts.MaxBatch }

// MaxEventBytes is the largest event, in bytes of JSON as sent.
func (s *Service) MaxEventBytes() int { return s.opts.MaxEventBytes }

// Accept reads the events in body, sent as contentType by tenantID, validates them, and publishes
// the valid ones to EVENTS; it returns once each is durable there or has failed.
//
// Refused as a whole, with nothing published: an unsupported content type (problem kind
// unsupported-media), a body that is not JSON (bad-request), an empty batch (invalid), a batch
// over MaxBatch (too-large), and a single event that does not validate (invalid, with a field per
// problem and the reason code as the "reason" extension). When no event could be stored because
// the bus failed, Accept returns an unavailable problem: the client should retry the request.
// Otherwise the Result tells each event's status, in request order.
func (s *Service) Accept(ctx context.Context, tenantID, contentType string, body []byte) (Result, error) {
	res, err := s.accept(ctx, tenantID, contentType, body)
	if err != nil {
		kind := problem.KindInternal
		if p, ok := problem.As(err); ok {
			kind = p.Kind
		}
		s.metrics.refused.WithLabelValues(string(kind)).Inc()
	}
	return res, err
}

func (s *Service) accept(ctx context.Context, tenantID, contentType string, body []byte) (Result, error) {
	if tenantID == "" {
		return Result{}, errors.New("ingest: no tenant")
	}
	sh, err := shapeOf(contentType)
	if err != nil {
		return Result{}, err
	}
	raws, single, err := s.split(sh, body)
	if err != nil {
		return Result{}, err
	}
	s.metrics.batchSize.Observe(float64(len(raws)))
	b := s.check(tenantID, raws)
	if single && len(b.rejections[0]) > 0 {
		s.metrics.count(b.res)
		return Result{}, b.rejections[0].problem()
	}
	s.publish(ctx, b)
	s.metrics.count(b.res)
	if b.tried > 0 && b.res.Accepted+b.res.Duplicates == 0 {
		return Result{}, problem.Unavailable("the event bus did not store the events; nothing was accepted, retry the request").
			With("failed", b.res.Failed).With("rejected", b.res.Rejected)
	}
	return b.res, nil
}

// batch is one request's events on their way through Accept.
type batch struct {
	res        Result
	rejections []rejection
	events     []bus.Behaviour // the events to publish
	at         []int           // at[i] is the index in the request of events[i]
	// firstOf maps the index of a repeat inside the request to the index of its first occurrence.
	firstOf map[int]int
	tried   int
}

// check validates every event, resolves repeats inside the request, and fills the results of
// the events that will not be published.
func (s *Service) check(tenantID string, raws []json.RawMessage) *batch {
	now := s.opts.Clock.Now()
	b := &batch{res: Result{Results: make([]EventResult, len(raws))}, rejections: make([]rejection, len(raws)),
		events: make([]bus.Behaviour, 0, len(raws)), at: make([]int, 0, len(raws))}
	var seen map[[2]string]int
	if len(raws) > 1 {
		seen = make(map[[2]string]int, len(raws))
	}
	for i, raw := range raws {
		ev, id, rej := s.decode(tenantID, raw, now)
		r := &b.res.Results[i]
		r.Index, r.ID = i, id
		if len(rej) > 0 {
			b.rejections[i] = rej
			r.Status, r.Reason, r.Detail = StatusRejected, rej.reason(), rej.detail()
			b.res.Rejected++
			continue
		}
		key := [2]string{ev.Source, ev.ID}
		if first, ok := seen[key]; ok {
			if b.firstOf == nil {
				b.firstOf = map[int]int{}
			}
			b.firstOf[i] = first
			continue
		}
		if seen != nil {
			seen[key] = i
		}
		b.events = append(b.events, ev)
		b.at = append(b.at, i)
	}
	return b
}

// publish sends the batch's events in one PublishBatchResults and fills their results, then the
// results of the repeats, which follow their first occurrence.
func (s *Service) publish(ctx context.Context, b *batch) {
	if len(b.events) == 0 {
		return
	}
	b.tried = len(b.events)
	msgs := make([]bus.Message, 0, len(b.events))
	at := make([]int, 0, len(b.events)) // at[j] is the index in the request of msgs[j]
	for i, ev := range b.events {
		m, err := s.bus.BehaviourMessage(ev)
		if err != nil { // not for a validated event; counted as not stored if it ever happens
			s.log.ErrorContext(ctx, "ingest: encode event", "err", err)
			b.fail(b.at[i])
			continue
		}
		msgs, at = append(msgs, m), append(at, b.at[i])
	}
	start := time.Now()
	results, err := s.bus.PublishBatchResults(ctx, msgs)
	s.metrics.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.WarnContext(ctx, "ingest: events not stored", "err", err)
	}
	for j, pr := range results {
		r := &b.res.Results[at[j]]
		switch {
		case pr.Err != nil:
			b.fail(at[j])
		case pr.Duplicate:
			r.Status, r.Detail = StatusDuplicate, "received before (same source and id, inside the de-duplication window)"
			b.res.Duplicates++
		default:
			r.Status = StatusAccepted
			b.res.Accepted++
		}
	}
	b.settleRepeats()
}

// fail records that the event at index i was not stored.
func (b *batch) fail(i int) {
	r := &b.res.Results[i]
	r.Status, r.Reason, r.Detail = StatusFailed, ReasonUnavailable, "the event bus did not store the event; send it again"
	b.res.Failed++
}

// settleRepeats gives each repeat inside the request the outcome of its first occurrence: a
// duplicate when that one is durable, failed when it is not.
func (b *batch) settleRepeats() {
	for i, first := range b.firstOf {
		if b.res.Results[first].Status == StatusFailed {
			b.fail(i)
			continue
		}
		r := &b.res.Results[i]
		r.Status, r.Detail = StatusDuplicate, "repeats the event at index "+strconv.Itoa(first)+" (same source and id)"
		b.res.Duplicates++
	}
}
