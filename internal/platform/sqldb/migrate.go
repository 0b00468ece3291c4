package sqldb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrations is one module's migration set. FS, under Dir ("" = its root), holds two folders,
// "sqlite" and "postgres", each of numbered goose SQL files (0001_init.sql …). Versions are tracked
// per module in goose_<module>.
type Migrations struct {
	Module string
	FS     fs.FS
	Dir    string
}

// For returns the folder of the set's migrations for one engine.
func (m Migrations) For(d Dialect) (fs.FS, error) {
	sub, err := fs.Sub(m.FS, path.Join(m.Dir, string(d)))
	if err != nil {
		return nil, fmt.Errorf("sqldb: %s migrations for %s: %w", m.Module, d, err)
	}
	return sub, nil
}

// Pending lists, per module, the migrations not yet applied, as "module/file" names.
func (db *DB) Pending(ctx context.Context, sets []Migrations) ([]string, error) {
	var pending []string
	for _, set := range sets {
		p, err := db.provider(ctx, set)
		if err != nil {
			return nil, err
		}
		status, err := p.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("sqldb: status of %s migrations: %w", set.Module, err)
		}
		for _, s := range status {
			if s.State == goose.StatePending {
				pending = append(pending, set.Module+"/"+s.Source.Path)
			}
		}
	}
	return pending, nil
}

// Migrate applies every pending migration, module by module in the order given, calling progress
// with one line per step (may be nil).
func (db *DB) Migrate(ctx context.Context, sets []Migrations, progress func(line string)) error {
	for _, set := range sets {
		p, err := db.provider(ctx, set)
		if err != nil {
			return err
		}
		for {
			res, err := p.UpByOne(ctx)
			if errors.Is(err, goose.ErrNoNextVersion) {
				break
			}
			if err != nil {
				return fmt.Errorf("sqldb: migrate %s: %w", set.Module, err)
			}
			if progress != nil {
				progress(fmt.Sprintf("migrated %s/%s (%s)", set.Module, res.Source.Path, res.Duration.Round(1000)))
			}
		}
	}
	return nil
}

func (db *DB) provider(ctx context.Context, set Migrations) (*goose.Provider, error) {
	sub, err := set.For(db.dialect)
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		goose.WithTableName("goose_" + set.Module),
		goose.WithDisableGlobalRegistry(true),
	}
	dialect := goose.DialectSQLite3
	if db.dialect == Postgres {
		dialect = goose.DialectPostgres
		id, err := db.migrationLockID(ctx)
		if err != nil {
			return nil, err
		}
		// Retry every second, for up to 5 minutes, while another node migrates.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(id), lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.write, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqldb: %s migrations: %w", set.Module, err)
	}
	return p, nil
}

// migrationLockID is the advisory lock that serialises migrations: one per database and schema, so
// nodes sharing a schema take turns while unrelated schemas (e.g. parallel tests) do not wait.
func (db *DB) migrationLockID(ctx context.Context) (int64, error) {
	var where string
	if err := db.write.QueryRowContext(ctx, `SELECT current_database() || '.' || current_schema()`).Scan(&where); err != nil {
		return 0, fmt.Errorf("sqldb: name the migration lock: %w", err)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte("perk-migrate:" + where))
	return int64(h.Sum64() & 0x7fffffffffffffff), nil
}
