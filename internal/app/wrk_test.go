package app

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wrkRun is one wrk run: requests per second, latency percentiles and the non-2xx answers.
type wrkRun struct {
	rps      float64
	p50, p99 time.Duration
	requests int
	bad      int
	// cpu is the CPU time wrk itself used, out of the run's wall time; server is the CPU time this
	// process (the server under test) used meanwhile.
	cpu, wall, server time.Duration
}

// wrkParams describes the load: POST body to paths (taken in turn by every connection) with the
// given headers, from conns connections on threads threads, for d.
type wrkParams struct {
	url      string
	paths    []string
	headers  map[string]string
	body     string
	threads  int
	conns    int
	duration time.Duration
}

// runWrk drives the load with wrk (Debian package "wrk"), a C load generator whose own cost per
// request is a fraction of a Go client's, so a 2-core box measures the server rather than the
// client. The benchmark is skipped with the install command when wrk is missing.
func runWrk(b *testing.B, p wrkParams) wrkRun {
	b.Helper()
	bin, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed: apt-get install wrk")
	}
	script := filepath.Join(b.TempDir(), "load.lua")
	if err := os.WriteFile(script, []byte(wrkScript(p)), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-t", strconv.Itoa(p.threads), "-c", strconv.Itoa(p.conns),
		"-d", p.duration.String(), "--latency", "-s", script, p.url)
	start, startCPU := time.Now(), selfCPU()
	out, err := cmd.CombinedOutput()
	server := selfCPU() - startCPU
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	run, err := parseWrk(string(out))
	if err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	run.wall, run.server = time.Since(start), server
	run.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return run
}

// selfCPU is the CPU time this process has used, every thread's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time the whole machine has spent busy (all but idle and I/O wait), from
// /proc/stat, in clock ticks of 10 ms.
func machineBusy(tb testing.TB) time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	require.NoError(tb, err)
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	require.Greater(tb, len(fields), 8, "/proc/stat: %q", line)
	var busy int64
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		require.NoError(tb, err)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait; guest time is already in user
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// wrkScript is the Lua script that sends the requests.
func wrkScript(p wrkParams) string {
	var s strings.Builder
	s.WriteString("wrk.method = \"POST\"\nwrk.body = " + strconv.Quote(p.body) + "\n")
	for k, v := range p.headers {
		fmt.Fprintf(&s, "wrk.headers[%s] = %s\n", strconv.Quote(k), strconv.Quote(v))
	}
	s.WriteString("local paths = {")
	for i, path := range p.paths {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(strconv.Quote(path))
	}
	s.WriteString("}\nlocal n = 0\nrequest = function()\n  n = n + 1\n" +
		"  return wrk.format(nil, paths[(n % #paths) + 1])\nend\n")
	return s.String()
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`([0-9]+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: .*`)
	wrkPercents = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

// parseWrk reads wrk's report.
func parseWrk(out string) (wrkRun, error) {
	var r wrkRun
	m := wrkRPS.FindStringSubmatch(out)
	t := wrkTotal.FindStringSubmatch(out)
	if m == nil || t == nil {
		return r, fmt.Errorf("wrk: no throughput in the report")
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.requests, _ = strconv.Atoi(t[1])
	if n := wrkNon2xx.FindStringSubmatch(out); n != nil {
		r.bad, _ = strconv.Atoi(n[1])
	}
	if e := wrkSocket.FindString(out); e != "" {
		return r, fmt.Errorf("wrk: %s", e)
	}
	for _, p := range wrkPercents.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[p[3]]
		d := time.Duration(v * float64(unit))
		if p[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	return r, nil
}
