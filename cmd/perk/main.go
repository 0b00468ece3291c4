// Command perk runs the perk user-growth and incentive platform.
//
//	perk serve [-c FILE] [--demo] [--data-dir DIR] [--addr HOST:PORT] [--auto-migrate]
//	perk migrate [-c FILE] [--data-dir DIR]
//	perk ledger verify [-c FILE] [--data-dir DIR]
//	perk config check -c FILE
//	perk config schema | perk config env
//	perk version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/perkhq/perk/internal/app"
	"github.com/perkhq/perk/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `perk — user-growth and incentive platform

Usage:
  perk serve   [-c FILE] [--demo] [--data-dir DIR] [--addr HOST:PORT] [--auto-migrate]
  perk migrate [-c FILE] [--data-dir DIR]
  perk ledger verify [-c FILE] [--data-dir DIR]
                                 recompute every balance from the entries; exit 1 on any mismatch
  perk config check -c FILE      report every problem in a config file, with its path
  perk config schema             print the config JSON Schema
  perk config env                list the PERK_* environment variables
  perk version

Configuration: defaults < YAML file (-c) < PERK_* environment < flags. See docs/configuration.md.
`

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout)
	case "migrate":
		err = migrate(ctx, args[1:], stdout)
	case "config":
		return configCmd(args[1:], stdout, stderr)
	case "ledger":
		return ledgerCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "perk", app.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "perk: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "perk:", err)
		return 1
	}
	return 0
}

// common are the flags shared by serve and migrate.
type common struct {
	file    string
	dataDir string
}

func (c *common) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "c", "", "YAML config file")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory (default ./data, or PERK_DATA_DIR)")
}

func (c *common) load() (config.Config, error) {
	cfg, err := config.Load(c.file, os.LookupEnv)
	if err != nil {
		return cfg, err
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	return cfg, cfg.Validate()
}

func serve(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("perk serve", flag.ContinueOnError)
	var (
		c           common
		demo        = fs.Bool("demo", false, "create a demo merchant and write <data-dir>/demo.json")
		addr        = fs.String("addr", "", "listen address (default 127.0.0.1:8080, or PERK_SERVER_ADDR)")
		autoMigrate = fs.Bool("auto-migrate", false, "apply pending migrations at start-up")
	)
	c.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	if *addr != "" {
		cfg.Server.Addr = *addr
	}
	cfg.Demo.Enabled = cfg.Demo.Enabled || *demo
	cfg.Database.AutoMigrate = cfg.Database.AutoMigrate || *autoMigrate
	if err := cfg.Validate(); err != nil {
		return err
	}
	a, err := app.New(ctx, app.Options{Config: cfg, Stdout: stdout})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func migrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("perk migrate", flag.ContinueOnError)
	var c common
	c.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	return app.Migrate(ctx, cfg, func(line string) { fmt.Fprintln(stdout, line) })
}

func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "perk config: want check, schema or env\n")
		return 2
	}
	switch args[0] {
	case "schema":
		_, _ = stdout.Write(config.Schema())
		return 0
	case "env":
		for _, name := range config.EnvNames() {
			fmt.Fprintln(stdout, name)
		}
		return 0
	case "check":
		fs := flag.NewFlagSet("perk config check", flag.ContinueOnError)
		file := fs.String("c", "", "YAML config file to check")
		fs.SetOutput(stderr)
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *file == "" {
			fmt.Fprintln(stderr, "perk config check: -c FILE is required")
			return 2
		}
		problems := config.Check(*file, os.LookupEnv)
		for _, p := range problems {
			fmt.Fprintln(stdout, p.String())
		}
		if len(problems) > 0 {
			fmt.Fprintf(stdout, "%s: %d problem(s)\n", *file, len(problems))
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", *file)
		return 0
	}
	fmt.Fprintf(stderr, "perk config: unknown subcommand %q\n", args[0])
	return 2
}

func ledgerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "perk ledger: want 'verify'")
		return 2
	}
	fs := flag.NewFlagSet("perk ledger verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.bind(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := c.load()
	if err != nil {
		fmt.Fprintln(stderr, "perk:", err)
		return 1
	}
	report, err := app.VerifyLedger(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "perk ledger verify:", err)
		return 1
	}
	for _, m := range report.Mismatches {
		fmt.Fprintln(stdout, m.String())
	}
	fmt.Fprintf(stdout, "checked %d entries, %d accounts, %d lots, %d holds: %d mismatch(es)\n",
		report.Entries, report.Accounts, report.Lots, report.Holds, len(report.Mismatches))
	if !report.OK() {
		return 1
	}
	return 0
}
