package catalog

import (
	"embed"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the catalog's migration set (module "catalog"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "catalog", FS: migrationFiles, Dir: "migrations"}
