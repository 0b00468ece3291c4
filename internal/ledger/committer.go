package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by calls made after the service (or its committer) was closed.
var ErrClosed = errors.New("ledger: closed")

// Result is the outcome of one request in a batch.
type Result[R any] struct {
	Value R
	Err   error
}

// FlushFunc runs one batch and returns one result per request, in order. It runs on a worker
// goroutine with a context that callers cannot cancel.
type FlushFunc[Q, R any] func(ctx context.Context, batch []Q) []Result[R]

// GroupCommitOptions tunes a GroupCommitter.
type GroupCommitOptions struct {
	// MaxBatch bounds the requests flushed together (default 512).
	MaxBatch int
	// Workers is how many batches may be in flight at once (default 1).
	Workers int
	// Linger, when positive, lets a worker wait up to this long for more requests before it
	// flushes a batch smaller than the concurrency it saw during the previous batch (the callers
	// just answered are about to come back). It trades a little latency for larger batches, like
	// PostgreSQL's commit_delay. One caller at a time never waits; when the load drops, the first
	// batch after it may wait once.
	Linger time.Duration
	// OnBatch, when set, is told the size and duration of every flush.
	OnBatch func(size int, took time.Duration)
}

// GroupCommitter coalesces concurrent requests into batches: each worker takes whatever is queued
// (at least one request, at most MaxBatch), flushes it with one call, and answers every caller.
// Nothing waits for a batch to fill: requests that arrive while a flush runs form the next batch,
// so the batch size grows with the load and a lone request is flushed at once.
type GroupCommitter[Q, R any] struct {
	flush   FlushFunc[Q, R]
	opts    GroupCommitOptions
	queue   chan *pending[Q, R]
	mu      sync.RWMutex
	closed  bool
	workers sync.WaitGroup
	// inDo counts callers inside Do; peak is the most seen since the last batch started.
	inDo, peak atomic.Int64
}

type pending[Q, R any] struct {
	ctx  context.Context
	req  Q
	done chan Result[R]
}

// NewGroupCommitter starts the workers; Close stops them.
func NewGroupCommitter[Q, R any](opts GroupCommitOptions, flush FlushFunc[Q, R]) *GroupCommitter[Q, R] {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	// The queue holds a few batches' worth; beyond that, callers wait to enqueue (back-pressure).
	c := &GroupCommitter[Q, R]{flush: flush, opts: opts, queue: make(chan *pending[Q, R], max(4*opts.MaxBatch*opts.Workers, 1024))}
	for range opts.Workers {
		c.workers.Add(1)
		go c.work()
	}
	return c
}

// Do queues req and waits for its batch's result. When ctx ends first, Do returns ctx.Err(): the
// request may still be flushed (or may have been already), so callers retry with the same
// idempotency key. A request whose context has ended before its batch starts is not flushed.
func (c *GroupCommitter[Q, R]) Do(ctx context.Context, req Q) (R, error) {
	var zero R
	p := &pending[Q, R]{ctx: ctx, req: req, done: make(chan Result[R], 1)}
	n := c.inDo.Add(1)
	defer c.inDo.Add(-1)
	for seen := c.peak.Load(); n > seen && !c.peak.CompareAndSwap(seen, n); seen = c.peak.Load() {
	}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return zero, ErrClosed
	}
	select {
	case c.queue <- p:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return zero, ctx.Err()
	}
	select {
	case r := <-p.done:
		return r.Value, r.Err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Close stops taking requests, flushes what is queued and waits for the workers.
func (c *GroupCommitter[Q, R]) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	c.workers.Wait()
}

func (c *GroupCommitter[Q, R]) work() {
	defer c.workers.Done()
	var timer *time.Timer
	if c.opts.Linger > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
	}
	for first := range c.queue {
		batch := c.collect(first, timer)
		if len(batch) > 0 {
			c.run(batch)
		}
	}
}

// collect takes first and whatever else is queued, up to MaxBatch, dropping requests whose caller
// has given up; with Linger, it waits a little for the callers of the previous batch.
func (c *GroupCommitter[Q, R]) collect(first *pending[Q, R], timer *time.Timer) []*pending[Q, R] {
	target := int(min(c.peak.Swap(c.inDo.Load()), int64(c.opts.MaxBatch)))
	batch := make([]*pending[Q, R], 0, min(c.opts.MaxBatch, max(target, len(c.queue)+1)))
	add := func(p *pending[Q, R]) {
		if err := p.ctx.Err(); err != nil {
			p.done <- Result[R]{Err: err}
			return
		}
		batch = append(batch, p)
	}
	add(first)
	for len(batch) < c.opts.MaxBatch {
		select {
		case p, ok := <-c.queue:
			if !ok {
				return batch
			}
			add(p)
			continue
		default:
		}
		break
	}
	if timer == nil || len(batch) >= target {
		return batch
	}
	timer.Reset(c.opts.Linger)
	defer timer.Stop()
	for len(batch) < target {
		select {
		case p, ok := <-c.queue:
			if !ok {
				return batch
			}
			add(p)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

func (c *GroupCommitter[Q, R]) run(batch []*pending[Q, R]) {
	reqs := make([]Q, len(batch))
	for i, p := range batch {
		reqs[i] = p.req
	}
	start := time.Now()
	results := c.safeFlush(reqs)
	if c.opts.OnBatch != nil {
		c.opts.OnBatch(len(batch), time.Since(start))
	}
	for i, p := range batch {
		p.done <- results[i]
	}
}

// safeFlush calls flush, turning a panic or a wrong number of results into an error for all.
func (c *GroupCommitter[Q, R]) safeFlush(reqs []Q) (results []Result[R]) {
	defer func() {
		if v := recover(); v != nil {
			results = failAll[R](len(reqs), fmt.Errorf("ledger: batch panicked: %v", v))
		}
	}()
	results = c.flush(context.Background(), reqs)
	if len(results) != len(reqs) {
		return failAll[R](len(reqs), fmt.Errorf("ledger: batch returned %d results for %d requests", len(results), len(reqs)))
	}
	return results
}

func failAll[R any](n int, err error) []Result[R] {
	out := make([]Result[R], n)
	for i := range out {
		out[i].Err = err
	}
	return out
}
