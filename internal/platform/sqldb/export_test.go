package sqldb

import "database/sql"

// SQLNoRows is exported for the external tests.
var SQLNoRows = sql.ErrNoRows

// CachedStatements is how many prepared statements db's reader cache holds (0 without a cache).
func CachedStatements(db *DB) int {
	if db.readStmts == nil {
		return 0
	}
	db.readStmts.mu.RLock()
	defer db.readStmts.mu.RUnlock()
	return len(db.readStmts.m)
}

// MaxCachedStatements is the bound of a statement cache.
const MaxCachedStatements = maxCachedStatements

// WriterStatements is how many prepared statements db's writer cache holds (0 without a cache).
func WriterStatements(db *DB) int {
	if db.writeStmts == nil {
		return 0
	}
	db.writeStmts.mu.Lock()
	defer db.writeStmts.mu.Unlock()
	return len(db.writeStmts.m)
}
