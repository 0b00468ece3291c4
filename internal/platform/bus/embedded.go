package bus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded runs a JetStream server in this process with its file store under DataDir/nats.
func startEmbedded(opts Options) (*server.Server, error) {
	sopts := &server.Options{
		ServerName:        opts.Name,
		JetStream:         true,
		StoreDir:          filepath.Join(opts.DataDir, "nats"),
		JetStreamMaxStore: opts.MaxStoreBytes,
		SyncAlways:        opts.SyncAlways,
		NoSigs:            true,
		// In-process only unless Listen is set; cluster, gateway, leaf and monitoring stay off.
		DontListen: opts.Listen == "",
	}
	if opts.Listen != "" {
		host, port, err := splitListen(opts.Listen)
		if err != nil {
			return nil, err
		}
		sopts.Host, sopts.Port = host, port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{opts.Logger.With("component", "nats")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded server with store %s not ready after 30s", sopts.StoreDir)
	}
	return srv, nil
}

func splitListen(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bus: listen address %q: bad port", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// serverLogger forwards the embedded server's log to slog. Notices are logged at debug level: the
// server is chatty at start-up, and what matters to an operator (warnings, errors) stays visible.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelDebug, format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.logf(slog.LevelError, format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.logf(slog.LevelDebug, format, v...) }

func (l serverLogger) logf(level slog.Level, format string, v ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, v...))
}
