package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
)

// maxCachedStatements bounds a statement cache; past it, statements run unprepared (texts built
// per call, such as IN lists of every length, must not grow it without end).
const maxCachedStatements = 512

// stmtCache keeps the prepared statements of one pool by their text. The SQLite driver otherwise
// parses and plans every statement anew, which costs a quarter of a short read. database/sql
// prepares a cached statement on each connection the first time it runs there and keeps it.
// Only pools outside transactions use it: a statement is never shared by two open result sets of
// one connection, because a connection serving open rows is not free for another query.
type stmtCache struct {
	pool *sql.DB
	mu   sync.RWMutex
	m    map[string]*sql.Stmt
}

func newStmtCache(pool *sql.DB) *stmtCache {
	return &stmtCache{pool: pool, m: map[string]*sql.Stmt{}}
}

// get returns the prepared statement of query, preparing it if the cache has room; nil means
// "run it unprepared".
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.RLock()
	st, ok := c.m[query]
	full := len(c.m) >= maxCachedStatements
	c.mu.RUnlock()
	if ok || full {
		return st
	}
	st, err := c.pool.PrepareContext(ctx, query)
	if err != nil {
		return nil // the unprepared run reports the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		_ = st.Close()
		return prev
	}
	if len(c.m) >= maxCachedStatements {
		_ = st.Close()
		return nil
	}
	c.m[query] = st
	return st
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	closeAll(c.m)
}

// closeAll closes and forgets the statements of m.
func closeAll(m map[string]*sql.Stmt) {
	for q, st := range m {
		if st != nil {
			_ = st.Close()
		}
		delete(m, q)
	}
}

// cachedQuerier runs statements on a pool through its statement cache.
type cachedQuerier struct {
	pool  *sql.DB
	cache *stmtCache
}

func (q cachedQuerier) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := q.cache.get(ctx, query); st != nil {
		res, err := st.ExecContext(ctx, args...)
		return res, classify(err)
	}
	return querier{q.pool}.Exec(ctx, query, args...)
}

func (q cachedQuerier) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := q.cache.get(ctx, query); st != nil {
		rows, err := st.QueryContext(ctx, args...)
		return rows, classify(err)
	}
	return querier{q.pool}.Query(ctx, query, args...)
}

func (q cachedQuerier) QueryRow(ctx context.Context, query string, args ...any) Row {
	if st := q.cache.get(ctx, query); st != nil {
		return Row{st.QueryRowContext(ctx, args...)}
	}
	return querier{q.pool}.QueryRow(ctx, query, args...)
}

// maxWriterStatements bounds the writer's statement cache: multi-row statements come in one text
// per row count, so a busy node meets a few thousand texts.
const maxWriterStatements = 2048

// writerStmts caches the prepared statements of SQLite's one writer connection, for the Exec and
// QueryRow calls of transactions. A statement cannot be prepared on the pool while a transaction
// holds the only connection, so a statement first met in a transaction runs unprepared and is
// noted; a goroutine of the cache prepares it once the connection is free, and later transactions
// use it through Tx.StmtContext, which finds it prepared on the connection. A statement that does
// not prepare is remembered as such (nil) and always runs unprepared. Query is not noted: its rows
// stay open while the caller reads them, and the same statement run again meanwhile would reset
// them; it runs prepared only the statements a service prepared itself (DB.Prepare).
type writerStmts struct {
	pool   *sql.DB
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	wanted []string
	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{}
}

func newWriterStmts(pool *sql.DB) *writerStmts {
	w := &writerStmts{pool: pool, m: map[string]*sql.Stmt{}, wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// lookup returns the prepared statement of query, or nil after noting it is wanted.
func (w *writerStmts) lookup(query string) *sql.Stmt {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st, ok := w.m[query]; ok {
		return st
	}
	if len(w.m)+len(w.wanted) < maxWriterStatements && !slices.Contains(w.wanted, query) {
		w.wanted = append(w.wanted, query)
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// prepare prepares queries now, on the writer connection, and keeps them (see DB.Prepare).
func (w *writerStmts) prepare(ctx context.Context, queries []string) error {
	for _, q := range queries {
		w.mu.Lock()
		_, ok := w.m[q]
		w.mu.Unlock()
		if ok {
			continue
		}
		st, err := w.pool.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqldb: prepare: %w", err)
		}
		w.mu.Lock()
		if _, ok := w.m[q]; ok {
			_ = st.Close()
		} else {
			w.m[q] = st
		}
		w.mu.Unlock()
	}
	return nil
}

// prepared returns the prepared statement of query, if any, without noting it as wanted.
func (w *writerStmts) prepared(query string) *sql.Stmt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[query]
}

// run prepares the wanted statements whenever some are noted, until close.
func (w *writerStmts) run() {
	defer close(w.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-w.quit
		cancel()
	}()
	for {
		select {
		case <-w.quit:
			return
		case <-w.wake:
			w.prepareWanted(ctx)
		}
	}
}

// prepareWanted prepares the statements noted since the last call, each as soon as the writer
// connection is free.
func (w *writerStmts) prepareWanted(ctx context.Context) {
	w.mu.Lock()
	wanted := w.wanted
	w.wanted = nil
	w.mu.Unlock()
	for _, q := range wanted {
		st, err := w.pool.PrepareContext(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st = nil // it runs unprepared, reporting its own errors
		}
		w.mu.Lock()
		if _, ok := w.m[q]; ok || len(w.m) >= maxWriterStatements {
			if st != nil {
				_ = st.Close()
			}
		} else {
			w.m[q] = st
		}
		w.mu.Unlock()
	}
}

// close stops the preparing goroutine and closes every cached statement.
func (w *writerStmts) close() {
	close(w.quit)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	closeAll(w.m)
	w.wanted = nil
}
