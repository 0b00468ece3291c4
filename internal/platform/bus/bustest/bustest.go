// Package bustest runs bus tests against both an embedded JetStream server and the external test
// server (127.0.0.1:4222), each test on its own random prefix, and starts nats-server processes for
// tests that kill and restart one.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
)

// DefaultURL is the external server used when PERK_TEST_NATS_URL is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// URL is the external NATS server (with JetStream) the tests use.
func URL() string {
	if u := os.Getenv("PERK_TEST_NATS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Mode is where a test's bus runs.
type Mode string

// The modes every bus test runs in.
const (
	Embedded Mode = "embedded"
	External Mode = "external"
)

// Modes lists the modes Run runs.
var Modes = []Mode{Embedded, External}

// Run runs fn once per mode as parallel subtests named "embedded" and "external", each with a fresh
// Env.
func Run(t *testing.T, fn func(t *testing.T, env *Env)) {
	t.Helper()
	for _, m := range Modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			fn(t, NewEnv(t, m))
		})
	}
}

// Env is one test's bus world: a random prefix on an embedded server or on the external one. Every
// bus it opens shares the prefix, so they are nodes of one deployment.
type Env struct {
	Mode   Mode
	Prefix string

	dataDir string
	mu      sync.Mutex
	first   *bus.Bus
}

// NewEnv returns a fresh Env. In External mode it fails the test at once, with a precise message,
// if the server does not answer, and deletes the prefix's streams when the test ends.
func NewEnv(t testing.TB, mode Mode) *Env {
	t.Helper()
	env := &Env{Mode: mode, Prefix: "t" + randomHex(6), dataDir: t.TempDir()}
	if mode == External {
		checkExternal(t)
		t.Cleanup(func() { DeleteStreams(URL(), env.Prefix) })
	}
	return env
}

// Open opens a bus in this Env, closed when the test ends. opts may set anything but the location:
// the first bus of an embedded Env runs the server (listening on a random local port), later ones
// connect to it like other nodes would; in External mode every bus connects to the external server.
func (e *Env) Open(t testing.TB, opts bus.Options) *bus.Bus {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	opts.Prefix = e.Prefix
	if opts.Logger == nil {
		opts.Logger = Logger()
	}
	switch {
	case e.Mode == External:
		opts.URL = URL()
	case e.first == nil:
		opts.DataDir, opts.Listen = e.dataDir, "127.0.0.1:0"
	default:
		opts.URL = e.first.ClientURL()
	}
	b, err := bus.Open(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	if e.first == nil {
		e.first = b
	}
	return b
}

// Logger is the logger tests give the bus: it discards, unless PERK_TEST_LOG is set, in which case
// it writes to stderr.
func Logger() *slog.Logger {
	if os.Getenv("PERK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

var external struct {
	once sync.Once
	err  error
}

func checkExternal(t testing.TB) {
	t.Helper()
	external.once.Do(func() {
		nc, err := nats.Connect(URL(), nats.Timeout(5*time.Second))
		if err != nil {
			external.err = err
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			external.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, external.err = js.AccountInfo(ctx)
	})
	if external.err != nil {
		t.Fatalf("NATS with JetStream is required for the bus tests and did not answer at %s: %v "+
			"(start nats-server -js, or set PERK_TEST_NATS_URL)", URL(), external.err)
	}
}

// DeleteStreams deletes the streams of prefix on the server at url, ignoring ones already gone.
func DeleteStreams(url, prefix string) {
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range bus.Streams {
		_ = js.DeleteStream(ctx, prefix+"_"+string(s))
	}
}

// DefaultServerBinary is the nats-server used by StartProcess when PERK_TEST_NATS_SERVER is not set.
const DefaultServerBinary = "/usr/sbin/nats-server"

// Process is a nats-server process owned by a test, with JetStream storing under its own directory.
type Process struct {
	t      testing.TB
	bin    string
	port   int
	store  string
	logf   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartProcess starts a nats-server process on a free local port; it is killed when the test ends.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	bin := os.Getenv("PERK_TEST_NATS_SERVER")
	if bin == "" {
		bin = DefaultServerBinary
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the restart tests need a nats-server binary at %s (or set PERK_TEST_NATS_SERVER): %v", bin, err)
	}
	dir := t.TempDir()
	p := &Process{t: t, bin: bin, port: freePort(t), store: filepath.Join(dir, "store"), logf: filepath.Join(dir, "nats.log")}
	p.Start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			if out, err := os.ReadFile(p.logf); err == nil {
				t.Logf("nats-server log:\n%s", tail(out, 4000))
			}
		}
	})
	return p
}

// URL is the process's client URL.
func (p *Process) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(p.port) }

// Start (re)starts the process on its port and store directory and waits until it accepts clients.
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Nil(p.t, p.cmd, "nats-server is already running")
	logFile, err := os.OpenFile(p.logf, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(p.t, err)
	defer logFile.Close()
	cmd := exec.Command(p.bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(p.port), "-sd", p.store)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(p.t, cmd.Start(), "start %s", p.bin)
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	require.Eventually(p.t, func() bool {
		select {
		case <-exited:
			return true // reported below
		default:
		}
		nc, err := nats.Connect(p.URL(), nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "nats-server did not become ready on port %d", p.port)
	select {
	case <-exited:
		out, _ := os.ReadFile(p.logf)
		p.t.Fatalf("nats-server exited at start:\n%s", tail(out, 4000))
	default:
	}
}

// Kill stops the process with SIGKILL (no shutdown, no flush) and waits for it to exit.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	err := p.cmd.Process.Signal(syscall.SIGKILL)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("kill nats-server: %v", err)
	}
	<-p.exited
	p.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("bustest: %v", err))
	}
	return hex.EncodeToString(b)
}
