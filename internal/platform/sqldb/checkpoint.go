package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultCheckpointInterval is how often the background checkpointer of an SQLite database copies
// the committed pages of its write-ahead log into the database file.
const DefaultCheckpointInterval = 200 * time.Millisecond

// SQLite's own auto-checkpoint, in WAL pages: the writer checkpoints after the commit that takes
// the log past it. With a background checkpointer the writer keeps a far higher one, a safety net
// that lets the log start over from its beginning when the checkpointer cannot keep up; the
// checkpointer has by then copied most pages, so the writer's checkpoint is short.
const (
	sqliteAutoCheckpoint = 1000
	writerAutoCheckpoint = 10_000
)

// CheckpointStats tells how the background checkpoints of an SQLite database go.
type CheckpointStats struct {
	// Runs is how many checkpoints ran, Busy how many found another one under way, Errors how many
	// failed.
	Runs, Busy, Errors int64
	// WALFrames is how many frames the write-ahead log held at the last checkpoint, and Backlog how
	// many of them it could not copy yet (a reader still needed them).
	WALFrames, Backlog int64
}

// checkpointer copies committed pages from the WAL into the database file on a connection of its
// own, every interval, so that the writer's commits do not pay for the copies and their fsyncs. A
// passive checkpoint never blocks the writer or the readers: it copies what no reader still needs
// and leaves the rest for the next one.
type checkpointer struct {
	conn       *sql.DB
	interval   time.Duration
	runs       atomic.Int64
	busy       atomic.Int64
	errors     atomic.Int64
	frames     atomic.Int64
	backlog    atomic.Int64
	stop, done chan struct{}
}

// startCheckpointer opens the checkpointer's connection on the database at dsn and starts it.
func startCheckpointer(dsn string, interval time.Duration) (*checkpointer, error) {
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open sqlite checkpointer: %w", err)
	}
	conn.SetMaxOpenConns(1)
	conn.SetMaxIdleConns(1)
	conn.SetConnMaxLifetime(0)
	c := &checkpointer{conn: conn, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			c.checkpoint()
		}
	}
}

// checkpoint runs one passive checkpoint and counts it.
func (c *checkpointer) checkpoint() {
	var busy, log, copied int64
	err := c.conn.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &copied)
	switch {
	case err != nil:
		c.errors.Add(1)
	case busy != 0:
		c.busy.Add(1)
	default:
		c.runs.Add(1)
		c.frames.Store(log)
		c.backlog.Store(log - copied)
	}
}

// stats returns the counters.
func (c *checkpointer) stats() CheckpointStats {
	return CheckpointStats{Runs: c.runs.Load(), Busy: c.busy.Load(), Errors: c.errors.Load(),
		WALFrames: c.frames.Load(), Backlog: c.backlog.Load()}
}

// close stops the checkpointer and closes its connection; the database's last connection to close
// checkpoints what is left.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.conn.Close()
}

// CheckpointStats returns the counters of the background checkpointer (zero without one: on
// PostgreSQL, or when the writer checkpoints itself).
func (db *DB) CheckpointStats() CheckpointStats {
	if db.ckpt == nil {
		return CheckpointStats{}
	}
	return db.ckpt.stats()
}
