package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// DefaultSchedule is the delay before each retry of a failing delivery: 11 attempts over about 25.7
// hours (plus up to 10% jitter on each delay), after which the delivery is dead.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 10 * time.Hour,
}

// Dispatcher defaults.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultJitter        = 0.1
	DefaultMaxRetryAfter = 24 * time.Hour
	// MaxResponseBody is how much of a receiver's answer the delivery log keeps.
	MaxResponseBody = 1 << 10
)

// DispatcherOptions configures a Dispatcher. Zero fields take the defaults.
type DispatcherOptions struct {
	// Client sends the requests. Redirects are never followed, whatever the client says. The
	// default client refuses to connect to loopback, private and link-local addresses (so merchants
	// cannot aim perk at its own network) and ignores proxy environment variables; inject a client
	// to use an egress proxy.
	Client *http.Client
	// AllowPrivateNetworks lets the default client reach loopback and private addresses (tests,
	// single-machine demos).
	AllowPrivateNetworks bool
	// Timeout bounds one attempt, connection to last byte read (default 10s).
	Timeout time.Duration
	// Schedule is the delay before each retry; after the last one fails the delivery is dead
	// (default DefaultSchedule).
	Schedule []time.Duration
	// Jitter adds up to this fraction of each delay, at random, so retries of many deliveries
	// spread out (default 0.1; negative: none). Jitter only lengthens delays.
	Jitter float64
	// MaxRetryAfter caps the wait a receiver may ask for with Retry-After (default 24h).
	MaxRetryAfter time.Duration
	// BatchSize is how many due deliveries one claim takes (default 64).
	BatchSize int
	// Concurrency bounds the requests in flight (default 16).
	Concurrency int
	// PollInterval is how often Run looks for due deliveries when nobody wakes it (default 1s).
	PollInterval time.Duration
	// Lease is how long a claim keeps other dispatchers off a batch (default 3 × Timeout + 30s). If a
	// node dies holding deliveries, another picks them up after the lease.
	Lease time.Duration
	// Node names this dispatcher in logs.
	Node string
	// UserAgent is sent with every request (default "perk-webhooks/1").
	UserAgent string
}

func (o DispatcherOptions) withDefaults() DispatcherOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = defaultClient(o.AllowPrivateNetworks)
	}
	client := *o.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.Client = &client
	if len(o.Schedule) == 0 {
		o.Schedule = DefaultSchedule
	}
	if o.Jitter == 0 {
		o.Jitter = DefaultJitter
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Lease <= o.Timeout {
		o.Lease = 3*o.Timeout + 30*time.Second
	}
	if o.UserAgent == "" {
		o.UserAgent = "perk-webhooks/1"
	}
	return o
}

var errPrivateAddress = errors.New("refused to connect to a loopback, private or link-local address")

// defaultClient dials only public addresses unless allowPrivate; the check runs on the resolved
// address, so a DNS name pointing inside the network is refused too.
func defaultClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip := net.ParseIP(host)
			if ip == nil || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
				ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
				return errPrivateAddress
			}
			return nil
		}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// Dispatcher sends due deliveries. Any number of dispatchers, on any number of nodes, may run on one
// database: each claims its batch with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL).
type Dispatcher struct {
	svc  *Service
	opts DispatcherOptions
	log  *slog.Logger
	wake chan struct{}

	lastStats time.Time
}

// NewDispatcher returns a dispatcher of this service's deliveries. Start it with Run, or drive it
// with DispatchDue.
func (s *Service) NewDispatcher(opts DispatcherOptions) *Dispatcher {
	opts = opts.withDefaults()
	return &Dispatcher{svc: s, opts: opts, wake: make(chan struct{}, 1),
		log: s.log.With("component", "webhook-dispatcher", "node", opts.Node)}
}

// Wake asks the dispatcher to look for due deliveries now. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx is done, then returns after the batch in hand (each request is bounded
// by Timeout). New deliveries queued in this process wake it at once; others are found within
// PollInterval.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.svc.addDispatcher(d)
	defer d.svc.removeDispatcher(d)
	poll := time.NewTicker(d.opts.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		d.housekeep(ctx)
		n, err := d.DispatchDue(context.WithoutCancel(ctx))
		if err != nil {
			d.log.Warn("webhook: dispatch", "err", err)
		}
		if err == nil && n == d.opts.BatchSize {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-poll.C:
		}
	}
	return nil
}

// job is a claimed delivery with what sending it needs.
type job struct {
	id, tenantID, endpointID, eventID string
	payload                           []byte
	failures                          int
	claim                             string
	endpoint                          *target // nil when the endpoint is gone
}

// target is the endpoint as the dispatcher sees it at claim time.
type target struct {
	url       string
	enabled   bool
	secrets   []string
	reasonOff string
}

// DispatchDue claims the deliveries due now (one batch), sends them and records the outcomes. It
// returns how many it claimed. Outcomes are recorded as they come in, those that arrive together in
// one transaction.
func (d *Dispatcher) DispatchDue(ctx context.Context) (int, error) {
	jobs, err := d.claim(ctx, d.svc.opts.Clock.Now())
	if err != nil || len(jobs) == 0 {
		return 0, err
	}
	results := make(chan result, len(jobs))
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.recordAll(ctx, results)
	}()
	sem := make(chan struct{}, d.opts.Concurrency)
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results <- d.deliver(ctx, j)
		})
	}
	wg.Wait()
	close(results)
	<-recorded
	return len(jobs), nil
}

func (d *Dispatcher) claim(ctx context.Context, now time.Time) ([]job, error) {
	lock := d.svc.db.Dialect().SkipLocked()
	token := ids.New("clm", now)
	var jobs []job
	err := d.svc.db.Tx(ctx, func(tx *sqldb.Tx) error {
		jobs = jobs[:0]
		rows, err := tx.Query(ctx, `UPDATE webhook_deliveries SET claim = $1, claimed_until = $2 WHERE id IN (
			SELECT id FROM webhook_deliveries WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $3
			AND claimed_until <= $3 ORDER BY next_attempt_at LIMIT $4`+lock+`)
			RETURNING id, tenant_id, endpoint_id, event_id, payload, failures`,
			token, sqldb.Micros(now.Add(d.opts.Lease)), sqldb.Micros(now), d.opts.BatchSize)
		if err != nil {
			return err
		}
		for rows.Next() {
			j := job{claim: token}
			var payload string
			if err := rows.Scan(&j.id, &j.tenantID, &j.endpointID, &j.eventID, &payload, &j.failures); err != nil {
				rows.Close()
				return err
			}
			j.payload = []byte(payload)
			jobs = append(jobs, j)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return d.loadTargets(ctx, tx, jobs, now)
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: claim deliveries: %w", err)
	}
	return jobs, nil
}

// loadTargets fills in each job's endpoint: URL, state and the secrets valid now.
func (d *Dispatcher) loadTargets(ctx context.Context, tx *sqldb.Tx, jobs []job, now time.Time) error {
	if len(jobs) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var args []any
	for _, j := range jobs {
		if !seen[j.endpointID] {
			seen[j.endpointID] = true
			args = append(args, j.endpointID)
		}
	}
	rows, err := tx.Query(ctx, `SELECT id, url, enabled, disabled_reason, secret, previous_secret, previous_secret_until
		FROM webhook_endpoints WHERE id IN (`+sqldb.Placeholders(1, len(args))+`)`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	targets := map[string]*target{}
	for rows.Next() {
		var (
			id, secret, previous string
			until                int64
			t                    target
		)
		if err := rows.Scan(&id, &t.url, &t.enabled, &t.reasonOff, &secret, &previous, &until); err != nil {
			return err
		}
		t.secrets = []string{secret}
		if previous != "" && until > sqldb.Micros(now) {
			t.secrets = append(t.secrets, previous)
		}
		targets[id] = &t
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := range jobs {
		jobs[i].endpoint = targets[jobs[i].endpointID]
	}
	return nil
}

// outcome is what one attempt came to.
type outcome struct {
	at         time.Time
	status     int
	latency    time.Duration
	err        string
	body       string
	retryAfter time.Duration // -1: none given
}

// result is what became of a claimed delivery: an attempt, or a cancellation without one.
type result struct {
	job    job
	out    outcome
	cancel string // non-empty: canceled without an attempt, for this reason
}

func (d *Dispatcher) deliver(ctx context.Context, j job) result {
	if j.endpoint == nil {
		return result{job: j, cancel: "endpoint deleted"}
	}
	if !j.endpoint.enabled {
		return result{job: j, cancel: "endpoint disabled: " + j.endpoint.reasonOff}
	}
	o := d.attempt(ctx, j)
	d.svc.metrics.latency.Observe(o.latency.Seconds())
	return result{job: j, out: o}
}

// attempt POSTs the delivery once.
func (d *Dispatcher) attempt(ctx context.Context, j job) outcome {
	o := outcome{at: d.svc.opts.Clock.Now(), retryAfter: -1}
	sig, err := signatures(j.endpoint.secrets, j.eventID, o.at, j.payload)
	if err != nil {
		o.err = err.Error()
		return o
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.endpoint.url, bytes.NewReader(j.payload))
	if err != nil {
		o.err = "bad request: " + err.Error()
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.opts.UserAgent)
	req.Header.Set(HeaderID, j.eventID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(o.at.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	start := time.Now()
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		o.latency = time.Since(start)
		o.err = d.describe(err)
		return o
	}
	defer resp.Body.Close()
	prefix, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10) // let the connection be reused
	o.latency = time.Since(start)
	o.status = resp.StatusCode
	o.body = sanitize(string(prefix))
	if readErr != nil && !isSuccess(o.status) {
		o.err = "reading the response: " + d.describe(readErr)
	}
	if o.status == http.StatusTooManyRequests || o.status == http.StatusServiceUnavailable {
		if wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), o.at); ok {
			o.retryAfter = wait
		}
	}
	return o
}

func (d *Dispatcher) describe(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("timed out after %s", d.opts.Timeout)
	case errors.Is(err, errPrivateAddress):
		return errPrivateAddress.Error()
	}
	return sanitize(truncate(err.Error(), 1000))
}

// sanitize makes receiver-controlled text storable as TEXT on both engines: valid UTF-8 (invalid
// bytes dropped, so it never grows) without NUL bytes, which PostgreSQL refuses.
func sanitize(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
}

func isSuccess(status int) bool { return status >= 200 && status < 300 }

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(10*365*24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// nextDelay is the wait before the retry after the given number of failures, or false when the
// schedule is exhausted.
func (d *Dispatcher) nextDelay(failures int, retryAfter time.Duration) (time.Duration, bool) {
	if failures > len(d.opts.Schedule) {
		return 0, false
	}
	delay := d.opts.Schedule[failures-1]
	if d.opts.Jitter > 0 {
		delay += time.Duration(rand.Float64() * d.opts.Jitter * float64(delay))
	}
	if retryAfter > 0 {
		delay = max(delay, min(retryAfter, d.opts.MaxRetryAfter))
	}
	return delay, true
}

// recordAll records results as they arrive: whatever is waiting goes into one transaction. If that
// transaction fails, each result is tried on its own, so one bad row cannot hold back the others.
func (d *Dispatcher) recordAll(ctx context.Context, results <-chan result) {
	for r := range results {
		batch := []result{r}
	drain:
		for {
			select {
			case more, ok := <-results:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		if err := d.record(ctx, batch); err == nil || len(batch) == 1 {
			d.logRecordErr(batch[0], err)
			continue
		}
		for _, one := range batch {
			d.logRecordErr(one, d.record(ctx, []result{one}))
		}
	}
}

func (d *Dispatcher) logRecordErr(r result, err error) {
	if err != nil {
		d.log.Error("webhook: record delivery outcome; it is sent again when its lease ends",
			"delivery", r.job.id, "err", err)
	}
}

// record writes results in one transaction and counts them once it has committed.
func (d *Dispatcher) record(ctx context.Context, batch []result) error {
	states := make([]DeliveryState, len(batch))
	err := d.svc.db.Tx(ctx, func(tx *sqldb.Tx) error {
		for i, r := range batch {
			var err error
			if r.cancel != "" {
				states[i], err = StateCanceled, d.recordCancel(ctx, tx, r.job, r.cancel)
			} else {
				states[i], err = d.recordAttempt(ctx, tx, r.job, r.out)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, st := range states {
		d.svc.metrics.deliveries.WithLabelValues(string(st)).Inc()
	}
	return nil
}

// recordAttempt writes an attempt to the log and moves its delivery on: delivered, retrying, dead,
// or (on 410 Gone) canceled with its endpoint disabled.
func (d *Dispatcher) recordAttempt(ctx context.Context, tx *sqldb.Tx, j job, o outcome) (DeliveryState, error) {
	next := o.at
	state := StateDelivered
	failures := j.failures
	gone := o.status == http.StatusGone
	switch {
	case isSuccess(o.status):
	case gone:
		state = StateCanceled
	default:
		failures++
		if delay, ok := d.nextDelay(failures, o.retryAfter); ok {
			state, next = StateRetrying, o.at.Add(delay)
		} else {
			state = StateDead
		}
	}
	lastError := o.err
	if lastError == "" && !isSuccess(o.status) {
		lastError = "HTTP " + strconv.Itoa(o.status)
		if gone {
			lastError = goneReason
		}
	}
	var finished any
	if state != StateRetrying {
		finished = sqldb.Micros(o.at)
	}
	// The delivery may have gone with its endpoint while the request was in flight: then there is no
	// log to add to.
	_, err := tx.Exec(ctx, `INSERT INTO webhook_attempts (tenant_id, delivery_id, id, attempted_at, status_code,
		latency_ms, error, response_body) SELECT $1, $2, $3, $4, $5, $6, $7, $8
		WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $2)`,
		j.tenantID, j.id, ids.New(attemptPrefix, o.at), sqldb.Micros(o.at), o.status, o.latency.Milliseconds(),
		o.err, o.body)
	if err != nil {
		return state, err
	}
	// A claim that lost its lease (a very slow node) still logs its attempt but leaves the delivery
	// to the dispatcher that holds it now.
	_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1, failures = $4,
		next_attempt_at = $5, last_attempt_at = $6, last_status = $7, last_error = $8, finished_at = $9,
		claim = '', claimed_until = 0, updated_at = $6 WHERE id = $1 AND claim = $2`,
		j.id, j.claim, string(state), failures, sqldb.Micros(next), sqldb.Micros(o.at), o.status,
		truncate(lastError, 1000), finished)
	if err != nil || !gone {
		return state, err
	}
	return state, d.disableGone(ctx, tx, j, o.at)
}

// goneReason is recorded on an endpoint whose receiver answered 410 Gone.
const goneReason = "410 Gone from receiver"

func (d *Dispatcher) disableGone(ctx context.Context, tx *sqldb.Tx, j job, now time.Time) error {
	res, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET enabled = $3, disabled_reason = $4, disabled_at = $5,
		updated_at = $5 WHERE tenant_id = $1 AND id = $2 AND enabled = $6`,
		j.tenantID, j.endpointID, false, goneReason, sqldb.Micros(now), true)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		tx.AfterCommit(func() {
			d.svc.metrics.disabled.WithLabelValues("gone").Inc()
			d.log.Warn("webhook: endpoint answered 410 Gone; disabled", "endpoint", j.endpointID, "tenant", j.tenantID)
		})
	}
	return cancelPending(ctx, tx, j.tenantID, j.endpointID, "endpoint disabled: "+goneReason, now)
}

// recordCancel ends a claimed delivery whose endpoint is disabled or gone, without an attempt.
func (d *Dispatcher) recordCancel(ctx context.Context, tx *sqldb.Tx, j job, reason string) error {
	now := d.svc.opts.Clock.Now()
	_, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'canceled', last_error = $3, finished_at = $4,
		claim = '', claimed_until = 0, updated_at = $4 WHERE id = $1 AND claim = $2`,
		j.id, j.claim, truncate(reason, 1000), sqldb.Micros(now))
	return err
}

// housekeep refreshes the pending gauge, at most once a second.
func (d *Dispatcher) housekeep(ctx context.Context) {
	if time.Since(d.lastStats) < time.Second {
		return
	}
	d.lastStats = time.Now()
	var pending int64
	err := d.svc.db.Reader().QueryRow(ctx,
		`SELECT COUNT(*) FROM webhook_deliveries WHERE state IN ('pending', 'retrying')`).Scan(&pending)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("webhook: count pending deliveries", "err", err)
		}
		return
	}
	d.svc.metrics.pending.Set(float64(pending))
}
