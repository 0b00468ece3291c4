// Package bus is perk's message bus: NATS JetStream, embedded in-process by default or an external
// server or cluster when a URL is set, behind one code path. It owns three streams (EVENTS, DOMAIN,
// CONFIG), durable competing consumers, fan-out watchers, an exactly-once-effect consumer helper over
// SQL (ConsumeTx) and the transactional outbox with its relay.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/clock"
)

// Stream names one of the bus's streams.
type Stream string

// The streams. Their names on the server carry the bus prefix (see Bus.StreamName).
const (
	// Events holds ingested behaviour events.
	Events Stream = "EVENTS"
	// Domain holds domain events relayed from the outbox.
	Domain Stream = "DOMAIN"
	// Config holds config-change notices that every node watches.
	Config Stream = "CONFIG"
)

// Streams lists every stream the bus creates.
var Streams = []Stream{Events, Domain, Config}

// StreamOptions sets one stream's limits. Zero fields take the defaults.
type StreamOptions struct {
	// MaxAge drops messages older than this (default 7 days; CONFIG 1 hour).
	MaxAge time.Duration
	// MaxBytes bounds the stream's size (default unlimited, i.e. bounded by the store).
	MaxBytes int64
	// Duplicates is the de-duplication window for Nats-Msg-Id (default 2 minutes; the server
	// accepts no less than 100ms, which only tests should use).
	Duplicates time.Duration
}

// Default stream limits.
const (
	DefaultMaxAge       = 7 * 24 * time.Hour
	DefaultConfigMaxAge = time.Hour
	DefaultDuplicates   = 2 * time.Minute
)

// Options says where the bus is and how to run it.
type Options struct {
	// URL of an external NATS server or cluster (comma-separated URLs allowed); empty runs an
	// embedded server in this process.
	URL string
	// DataDir is the data directory; the embedded server keeps its store under DataDir/nats.
	DataDir string
	// Listen is the embedded server's client address: empty means in-process only (no TCP port);
	// "127.0.0.1:0" picks a free port (see ClientURL). The bus itself always connects in-process.
	Listen string
	// Prefix isolates several buses on one server: prefix "t1" gives streams "t1_EVENTS" and
	// subjects "t1.events.>". Letters, digits, '-' and '_' only.
	Prefix string
	// MaxStoreBytes bounds the embedded server's file store (default: the server's, 75% of the disk).
	// It does not apply to an external server, whose limits are its own.
	MaxStoreBytes int64
	// SyncAlways makes the embedded server fsync every write, so acknowledged messages survive an
	// operating-system crash, at a large cost in throughput. Off, writes reach the OS at once
	// (they survive the process being killed) and are fsynced every 2 minutes.
	SyncAlways bool
	// Replicas is the replication factor of the streams on a cluster (default 1).
	Replicas int
	// Streams overrides the limits of individual streams.
	Streams map[Stream]StreamOptions
	// MaxPendingAsync bounds the asynchronous publishes in flight (PublishBatch, the relay);
	// default 4096.
	MaxPendingAsync int
	// PublishTimeout bounds the wait for an acknowledgement when ctx has no deadline (default 5s).
	PublishTimeout time.Duration
	// Name names this node, for the connection and the embedded server (default: the host name).
	Name string
	// Clock stamps processed-message records (default clock.Real).
	Clock clock.Clock
	// Logger receives connection and server events (default slog.Default()).
	Logger *slog.Logger
	// Registerer registers the bus's metrics; nil means don't register.
	Registerer prometheus.Registerer
}

// Bus is a connection to JetStream with the perk streams in place. It is safe for concurrent use.
type Bus struct {
	opts    Options
	log     *slog.Logger
	clock   clock.Clock
	srv     *server.Server // nil when external
	nc      *nats.Conn
	js      jetstream.JetStream
	metrics *metrics

	mu       sync.Mutex
	closed   bool
	nextStop int
	stops    map[int]func()
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// Open starts the embedded server (when URL is empty), connects, and creates or updates the streams.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	b := &Bus{opts: opts, log: opts.Logger, clock: opts.Clock, stops: map[int]func(){}}
	b.metrics = newMetrics(opts.Registerer)
	if opts.URL == "" {
		if b.srv, err = startEmbedded(opts); err != nil {
			return nil, err
		}
	}
	if err := b.connect(); err != nil {
		b.shutdownServer()
		return nil, err
	}
	if err := b.ensureStreams(ctx); err != nil {
		b.nc.Close()
		b.shutdownServer()
		return nil, err
	}
	return b, nil
}

func withDefaults(opts Options) (Options, error) {
	if !prefixPattern.MatchString(opts.Prefix) {
		return opts, fmt.Errorf("bus: prefix %q may hold only letters, digits, '-' and '_'", opts.Prefix)
	}
	if opts.URL == "" && opts.DataDir == "" {
		return opts, errors.New("bus: DataDir is required for the embedded server")
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.MaxPendingAsync <= 0 {
		opts.MaxPendingAsync = 4096
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 5 * time.Second
	}
	if opts.Name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "perk"
		}
		opts.Name = host
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return opts, nil
}

func (b *Bus) connect() error {
	log := b.log
	natsOpts := []nats.Option{
		nats.Name(b.opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil on a deliberate close
				log.Warn("bus: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("bus: async error", "subject", subject, "err", err)
		}),
	}
	url := b.opts.URL
	if b.srv != nil {
		url = ""
		natsOpts = append(natsOpts, nats.InProcessServer(b.srv))
	}
	nc, err := nats.Connect(url, natsOpts...)
	if err != nil {
		where := redact(b.opts.URL)
		if b.srv != nil {
			where = "the embedded server"
		}
		return fmt.Errorf("bus: connect to %s: %w", where, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(b.opts.MaxPendingAsync),
		jetstream.WithPublishAsyncTimeout(b.opts.PublishTimeout),
		jetstream.WithDefaultTimeout(b.opts.PublishTimeout),
	)
	if err != nil {
		nc.Close()
		return fmt.Errorf("bus: jetstream: %w", err)
	}
	b.nc, b.js = nc, js
	return nil
}

func (b *Bus) ensureStreams(ctx context.Context) error {
	for _, s := range Streams {
		cfg := b.streamConfig(s)
		if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bus: create or update stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

func (b *Bus) streamConfig(s Stream) jetstream.StreamConfig {
	o := b.opts.Streams[s]
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
		if s == Config {
			o.MaxAge = DefaultConfigMaxAge
		}
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = -1
	}
	if o.Duplicates <= 0 {
		o.Duplicates = min(DefaultDuplicates, o.MaxAge)
	}
	// A full EVENTS or DOMAIN stream refuses new messages (publishers see errors and retry)
	// rather than silently dropping ones nobody has consumed yet; CONFIG notices are disposable.
	discard := jetstream.DiscardNew
	if s == Config {
		discard = jetstream.DiscardOld
	}
	return jetstream.StreamConfig{
		Name:       b.StreamName(s),
		Subjects:   []string{b.subjectRoot(s) + ".>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    discard,
		MaxAge:     o.MaxAge,
		MaxBytes:   o.MaxBytes,
		Duplicates: o.Duplicates,
		Replicas:   b.opts.Replicas,
	}
}

// StreamName returns the server-side name of a stream, e.g. "t1_EVENTS" for prefix "t1".
func (b *Bus) StreamName(s Stream) string {
	if b.opts.Prefix == "" {
		return string(s)
	}
	return b.opts.Prefix + "_" + string(s)
}

func (b *Bus) subjectRoot(s Stream) string {
	root := strings.ToLower(string(s))
	if b.opts.Prefix == "" {
		return root
	}
	return b.opts.Prefix + "." + root
}

// Subject builds a subject on a stream: Subject(Domain, "grant", "succeeded") is
// "<prefix>.domain.grant.succeeded". Pass ">" or "*" as parts to build a filter.
func (b *Bus) Subject(s Stream, parts ...string) string {
	return strings.Join(append([]string{b.subjectRoot(s)}, parts...), ".")
}

// streamOf finds the stream a subject belongs to.
func (b *Bus) streamOf(subject string) (Stream, bool) {
	for _, s := range Streams {
		if strings.HasPrefix(subject, b.subjectRoot(s)+".") {
			return s, true
		}
	}
	return "", false
}

// ClientURL is the URL other processes use to reach the embedded server; empty when the server is
// external or listens in-process only.
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.opts.Listen == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// StreamStats is the state of a stream.
type StreamStats struct {
	Messages  uint64
	Bytes     uint64
	FirstSeq  uint64
	LastSeq   uint64
	Consumers int
}

// Stats reports the state of a stream, for health checks and tests.
func (b *Bus) Stats(ctx context.Context, s Stream) (StreamStats, error) {
	st, err := b.js.Stream(ctx, b.StreamName(s))
	if err != nil {
		return StreamStats{}, fmt.Errorf("bus: stream %s: %w", b.StreamName(s), err)
	}
	info := st.CachedInfo()
	return StreamStats{
		Messages:  info.State.Msgs,
		Bytes:     info.State.Bytes,
		FirstSeq:  info.State.FirstSeq,
		LastSeq:   info.State.LastSeq,
		Consumers: info.State.Consumers,
	}, nil
}

// Connected reports whether the connection to the server is up.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Ping checks that JetStream answers, for readiness probes.
func (b *Bus) Ping(ctx context.Context) error {
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("bus: jetstream: %w", err)
	}
	return nil
}

// track registers a consumer's stop function so Close can stop it; it returns an id for untrack.
func (b *Bus) track(stop func()) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errors.New("bus: closed")
	}
	b.nextStop++
	b.stops[b.nextStop] = stop
	return b.nextStop, nil
}

func (b *Bus) untrack(id int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.stops, id)
}

// Close stops every consumer (letting handlers in progress finish), drains the connection and shuts
// the embedded server down, in that order. It is safe to call more than once.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	stops := make([]func(), 0, len(b.stops))
	for _, stop := range b.stops {
		stops = append(stops, stop)
	}
	b.mu.Unlock()

	var wg sync.WaitGroup
	for _, stop := range stops {
		wg.Go(stop)
	}
	wg.Wait()
	err := b.drain()
	b.shutdownServer()
	return err
}

func (b *Bus) drain() error {
	closed := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := b.nc.Drain(); err != nil {
		// Not connected (closed or reconnecting): nothing is left to flush.
		b.nc.Close()
		return nil
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		b.nc.Close()
		return errors.New("bus: drain did not finish in 30s")
	}
	return nil
}

func (b *Bus) shutdownServer() {
	if b.srv == nil {
		return
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

func redact(url string) string {
	if url == "" {
		return "<no url>"
	}
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
