package catalog

import (
	"embed"
	"io/fs"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the catalog's migration set (module "catalog"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "catalog", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic("catalog: " + err.Error())
	}
	return sub
}
