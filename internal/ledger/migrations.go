package ledger

import (
	"embed"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the ledger's migration set (module "ledger"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "ledger", FS: migrationFiles, Dir: "migrations"}
