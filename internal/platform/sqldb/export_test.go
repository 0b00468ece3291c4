package sqldb

import "database/sql"

// SQLNoRows is exported for the external tests.
var SQLNoRows = sql.ErrNoRows
