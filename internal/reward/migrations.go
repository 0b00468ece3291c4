package reward

import (
	"embed"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the reward module's migration set (module "reward"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "reward", FS: migrationFiles, Dir: "migrations"}
