package ledger_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
)

// gatedFlush is a flush that records its batches and, while gated, blocks until let go.
type gatedFlush struct {
	mu      sync.Mutex
	batches [][]int
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

// open lets every flush through (also when a test fails early, so Close does not hang).
func (g *gatedFlush) open() { g.once.Do(func() { close(g.gate) }) }

func newGatedFlush() *gatedFlush {
	return &gatedFlush{entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (g *gatedFlush) flush(_ context.Context, batch []int) []ledger.Result[int] {
	g.mu.Lock()
	g.batches = append(g.batches, append([]int(nil), batch...))
	g.mu.Unlock()
	g.entered <- struct{}{}
	<-g.gate
	out := make([]ledger.Result[int], len(batch))
	for i, x := range batch {
		out[i].Value = x * 10
	}
	return out
}

func (g *gatedFlush) sizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int
	for _, b := range g.batches {
		out = append(out, len(b))
	}
	return out
}

func TestGroupCommitterCoalesces(t *testing.T) {
	t.Parallel()
	g := newGatedFlush()
	c := ledger.NewGroupCommitter(ledger.GroupCommitOptions{MaxBatch: 4}, g.flush)
	defer c.Close()
	defer g.open()
	ctx := context.Background()

	var wg sync.WaitGroup
	results := make([]int, 11)
	do := func(i int) {
		wg.Go(func() {
			v, err := c.Do(ctx, i)
			if assertNoError(t, err) {
				results[i] = v
			}
		})
	}
	do(0)
	<-g.entered // the first request is flushed alone, at once
	for i := 1; i < 11; i++ {
		do(i)
	}
	// Let the first batch go only once the others are queued behind it.
	require.Eventually(t, func() bool { return queued(c) == 10 }, 10*time.Second, time.Millisecond)
	g.open()
	wg.Wait()
	require.Equal(t, []int{1, 4, 4, 2}, g.sizes())
	for i, v := range results {
		require.Equal(t, i*10, v)
	}
}

// queued is how many requests wait in c's queue.
func queued(c *ledger.GroupCommitter[int, int]) int { return ledger.QueueLen(c) }

func TestGroupCommitterCancelAndClose(t *testing.T) {
	t.Parallel()
	g := newGatedFlush()
	c := ledger.NewGroupCommitter(ledger.GroupCommitOptions{}, g.flush)
	defer c.Close()
	defer g.open()
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { _, err := c.Do(ctx, 1); first <- err }()
	<-g.entered

	// A caller that gives up while queued gets its context's error and is never flushed.
	gone, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { _, err := c.Do(gone, 2); cancelled <- err }()
	require.Eventually(t, func() bool { return queued(c) == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-cancelled, context.Canceled)

	// One more that stays; Close flushes it before returning.
	third := make(chan error, 1)
	go func() { _, err := c.Do(ctx, 3); third <- err }()
	require.Eventually(t, func() bool { return queued(c) == 2 }, 10*time.Second, time.Millisecond)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	g.open()
	<-closed
	require.NoError(t, <-first)
	require.NoError(t, <-third)
	require.Equal(t, []int{1, 1}, g.sizes(), "the cancelled request was dropped, the third flushed")

	_, err := c.Do(ctx, 4)
	require.ErrorIs(t, err, ledger.ErrClosed)
	c.Close() // twice is fine
}

func TestGroupCommitterFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	panicky := ledger.NewGroupCommitter(ledger.GroupCommitOptions{}, func(context.Context, []int) []ledger.Result[int] {
		panic("boom")
	})
	defer panicky.Close()
	_, err := panicky.Do(ctx, 1)
	require.ErrorContains(t, err, "batch panicked: boom")

	short := ledger.NewGroupCommitter(ledger.GroupCommitOptions{}, func(context.Context, []int) []ledger.Result[int] {
		return nil
	})
	defer short.Close()
	_, err = short.Do(ctx, 1)
	require.ErrorContains(t, err, "0 results for 1 requests")

	// Still serving after a panic.
	_, err = panicky.Do(ctx, 2)
	require.ErrorContains(t, err, "batch panicked")
}

// TestGroupCommitterLinger: a batch smaller than the concurrency of the previous one waits for the
// callers coming back, instead of splitting them into alternating half batches.
func TestGroupCommitterLinger(t *testing.T) {
	t.Parallel()
	g := newGatedFlush()
	c := ledger.NewGroupCommitter(ledger.GroupCommitOptions{Linger: time.Minute}, g.flush)
	defer c.Close()
	defer g.open()
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { _, err := c.Do(ctx, 0); first <- err }()
	<-g.entered
	// Three more callers queue behind the first batch: four are in flight.
	var wg sync.WaitGroup
	for i := 1; i <= 3; i++ {
		wg.Go(func() {
			_, err := c.Do(ctx, i)
			assertNoError(t, err)
		})
	}
	require.Eventually(t, func() bool { return queued(c) == 3 }, 10*time.Second, time.Millisecond)
	g.open()
	require.NoError(t, <-first)
	// The worker has taken the three; it waits for a fourth, as four were in flight before.
	require.Eventually(t, func() bool { return queued(c) == 0 }, 10*time.Second, time.Millisecond)
	_, err := c.Do(ctx, 4)
	require.NoError(t, err)
	wg.Wait()
	require.Equal(t, []int{1, 4}, g.sizes())
}

// TestGroupCommitterLoneCaller: one caller at a time never lingers (with a one-minute Linger, this
// test would time out if it did).
func TestGroupCommitterLoneCaller(t *testing.T) {
	t.Parallel()
	g := newGatedFlush()
	g.open()
	c := ledger.NewGroupCommitter(ledger.GroupCommitOptions{Linger: time.Minute}, g.flush)
	defer c.Close()
	for i := range 20 {
		v, err := c.Do(context.Background(), i)
		require.NoError(t, err)
		require.Equal(t, i*10, v)
	}
	require.Len(t, g.sizes(), 20)
}
