package qualify_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
)

// benchWallets is how many different wallets and carts a benchmark cycles through, so the figures
// are not those of one lucky wallet.
const benchWallets = 64

// How benchmarkEvaluate evaluates.
const (
	plain    = iota // Evaluate
	reuse           // Buffer.Evaluate on one buffer
	prepared        // Buffer.Evaluate of prepared wallets (NewWallet), as a node's wallet cache holds them
)

// benchmarkEvaluate times Evaluate (or Buffer.Evaluate, see mode) on 64 realistic wallets of n
// coupons drawn from one tenant's 400 templates (see realisticSpec and realisticWallet) and 5-item
// carts, one call at a time, and reports the p50, p99 and max of a call in nanoseconds, and the
// process's CPU time per call (which includes the garbage collector's work).
//
//	go test -run '^$' -bench 'BenchmarkEvaluate' -benchtime 20000x ./internal/coupon/qualify/
func benchmarkEvaluate(b *testing.B, n, mode int) {
	rng := rand.New(rand.NewPCG(42, uint64(n)))
	pool := newTenantPool(b, rng, 400)
	inputs := make([]qualify.Input, benchWallets)
	applicable, stacked := 0, 0
	for i := range inputs {
		w := realisticWallet(b, rng, pool, n)
		inputs[i] = w.input(realisticCart(rng, 5))
		res := qualify.Evaluate(inputs[i])
		for _, o := range res.Coupons {
			if o.Applicable {
				applicable++
			}
		}
		if res.Best.Stack != nil {
			stacked += len(res.Best.Stack.CouponIDs)
		}
		if mode == prepared {
			inputs[i].Wallet = qualify.NewWallet(inputs[i].Coupons, inputs[i].Templates)
			inputs[i].Coupons, inputs[i].Templates = nil, nil
		}
	}
	took := make([]time.Duration, 0, b.N)
	worked := make([]time.Duration, 0, b.N)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	var buf qualify.Buffer
	cpu := cpuTime()
	for i := 0; b.Loop(); i++ {
		// The thread's CPU clock is read outside the timed span: each reading is a system call.
		startCPU := threadCPU()
		start := time.Now()
		var outcomes int
		if mode == plain {
			outcomes = len(qualify.Evaluate(inputs[i%benchWallets]).Coupons)
		} else {
			outcomes = len(buf.Evaluate(inputs[i%benchWallets]).Coupons)
		}
		took = append(took, time.Since(start))
		worked = append(worked, threadCPU()-startCPU)
		if outcomes != n {
			b.Fatal("outcomes missing")
		}
	}
	cpu = cpuTime() - cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(took)), "cpu-ns/op")
	slices.Sort(took)
	slices.Sort(worked)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(took[len(took)-1].Nanoseconds()), "max-ns")
	b.ReportMetric(float64(worked[len(worked)/2].Nanoseconds()), "p50-thread-cpu-ns")
	b.ReportMetric(float64(worked[len(worked)*99/100].Nanoseconds()), "p99-thread-cpu-ns")
	b.ReportMetric(float64(applicable)/benchWallets, "applicable/wallet")
	b.ReportMetric(float64(stacked)/benchWallets, "stacked/wallet")
}

// BenchmarkEvaluate200 is the target: a 200-coupon wallet, a 5-item cart.
func BenchmarkEvaluate200(b *testing.B) { benchmarkEvaluate(b, 200, plain) }

// BenchmarkEvaluate20 is an ordinary wallet.
func BenchmarkEvaluate20(b *testing.B) { benchmarkEvaluate(b, 20, plain) }

// BenchmarkEvaluate200Buffer is BenchmarkEvaluate200 evaluating into one reused Buffer.
func BenchmarkEvaluate200Buffer(b *testing.B) { benchmarkEvaluate(b, 200, reuse) }

// BenchmarkEvaluate20Buffer is BenchmarkEvaluate20 evaluating into one reused Buffer.
func BenchmarkEvaluate20Buffer(b *testing.B) { benchmarkEvaluate(b, 20, reuse) }

// BenchmarkEvaluate200Wallet is BenchmarkEvaluate200Buffer on prepared wallets: what a node's
// qualification does for a wallet its cache holds.
func BenchmarkEvaluate200Wallet(b *testing.B) { benchmarkEvaluate(b, 200, prepared) }

// BenchmarkEvaluate20Wallet is BenchmarkEvaluate20Buffer on prepared wallets.
func BenchmarkEvaluate20Wallet(b *testing.B) { benchmarkEvaluate(b, 20, prepared) }

// indexSpec is a template of a large tenant: 1 % apply everywhere, 20 % to one or two of 500
// categories, 30 % to one or two of 2,000 brands, 49 % to 1 to 20 of 1,000,000 SKUs; one in a
// hundred has a CEL condition.
func indexSpec(rng *rand.Rand) qualify.Spec {
	s := realisticSpec(rng)
	s.Applicability = qualify.Applicability{}
	s.Condition = ""
	a := &s.Applicability
	switch r := rng.IntN(100); {
	case r == 0:
	case r < 21:
		a.Category.Include = distinct(rng, "cat-", 500, 1+rng.IntN(2))
	case r < 51:
		a.Brand.Include = distinct(rng, "brand-", 2000, 1+rng.IntN(2))
	default:
		a.SKU.Include = distinct(rng, "sku-", 1_000_000, 1+rng.IntN(20))
	}
	if rng.IntN(100) == 0 {
		s.Condition = `has(user.level) && user.level >= 2`
	}
	return s
}

func distinct(rng *rand.Rand, prefix string, space, n int) []string {
	out := make([]string, 0, n)
	for len(out) < n {
		v := fmt.Sprintf("%s%d", prefix, rng.IntN(space))
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func indexCart(rng *rand.Rand) qualify.Cart {
	c := qualify.Cart{BusinessLine: "retail", Channel: "app"}
	for range 5 {
		c.Items = append(c.Items, item(fmt.Sprintf("sku-%d", rng.IntN(1_000_000)), fmt.Sprintf("cat-%d", rng.IntN(500)),
			fmt.Sprintf("brand-%d", rng.IntN(2000)), "", 1000+rng.Int64N(50000), 1))
	}
	return c
}

func buildTemplates(b *testing.B, n int) []*qualify.Template {
	rng := rand.New(rand.NewPCG(7, 7))
	ts := make([]*qualify.Template, n)
	for i := range ts {
		t, err := qualify.Compile(fmt.Sprintf("tpl-%06d", i), 1, indexSpec(rng))
		require.NoError(b, err)
		ts[i] = t
	}
	return ts
}

// cpuTime is the CPU time the process has used (every thread, the garbage collector's too): on a
// shared machine it tells the work done from the time spent waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIndex100k builds 100,000 compiled templates and their index, and reports the heap they
// hold: bytes per template (templates and index together), the index's own share, and total MB.
//
//	go test -run '^$' -bench 'BenchmarkIndex100k' -benchtime 1x ./internal/coupon/qualify/
func BenchmarkIndex100k(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		before := heapAlloc()
		ts := buildTemplates(b, n)
		mid := heapAlloc()
		ix := qualify.NewIndex(ts)
		after := heapAlloc()
		if ix.Len() != n {
			b.Fatalf("indexed %d", ix.Len())
		}
		b.ReportMetric(float64(after-before)/n, "bytes/template")
		b.ReportMetric(float64(after-mid)/n, "index-bytes/template")
		b.ReportMetric(float64(after-before)/(1<<20), "total-MB")
		runtime.KeepAlive(ts)
		runtime.KeepAlive(ix)
	}
}

// BenchmarkCandidates asks an index of 100,000 templates which templates a 5-item cart could use.
//
//	go test -run '^$' -bench 'BenchmarkCandidates' ./internal/coupon/qualify/
func BenchmarkCandidates(b *testing.B) {
	ix := qualify.NewIndex(buildTemplates(b, 100_000))
	rng := rand.New(rand.NewPCG(8, 8))
	carts := make([]qualify.Cart, benchWallets)
	found := 0
	for i := range carts {
		carts[i] = indexCart(rng)
		found += len(ix.Candidates(carts[i]))
	}
	runtime.GC() // do not time the collection of the build's garbage
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if len(ix.Candidates(carts[i%benchWallets])) == 0 {
			b.Fatal("no candidate")
		}
	}
	b.ReportMetric(float64(found)/benchWallets, "candidates/cart")
}

// BenchmarkJitterReference is the reference the Evaluate tail latencies are read against, as
// BenchmarkPgbenchReference is PostgreSQL's: it times a pure arithmetic loop (no memory, no
// allocation, no branch to mispredict) calibrated to take about 10, 20, 30 and 40 µs, one call at a
// time on a locked thread like benchmarkEvaluate, and reports its p50 and p99. Whatever the p99 of
// a loop of a given median is here, no code of that median can have a lower one on this machine:
// what rises above the median is the machine's (interrupts, the hypervisor), not the code's.
//
//	go test -run '^$' -bench 'BenchmarkJitterReference' -benchtime 20000x ./internal/coupon/qualify/
func BenchmarkJitterReference(b *testing.B) {
	const calibration = 20_000_000
	start := time.Now()
	spin(calibration)
	perStep := float64(time.Since(start).Nanoseconds()) / calibration
	for _, us := range []int{10, 20, 30, 40} {
		b.Run(fmt.Sprintf("%dus", us), func(b *testing.B) {
			steps := int(float64(us*1000) / perStep)
			took := make([]time.Duration, 0, b.N)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for b.Loop() {
				t0 := time.Now()
				spin(steps)
				took = append(took, time.Since(t0))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
			over := len(took) - sort.Search(len(took), func(i int) bool { return took[i] > 50*time.Microsecond })
			b.ReportMetric(100*float64(over)/float64(len(took)), "pct-over-50µs")
		})
	}
}

// spinSink keeps spin's result alive.
var spinSink uint64

// spin runs n steps of a linear congruential generator: a chain of dependent multiplications,
// always the same work.
func spin(n int) {
	x := spinSink
	for range n {
		x = x*6364136223846793005 + 1442695040888963407
	}
	spinSink = x
}

// BenchmarkWalletMemory prepares 64 realistic wallets of 20 and of 200 coupons (see
// benchmarkEvaluate) and reports the heap a prepared Wallet adds to its coupons, per coupon: what
// a node's wallet cache holds beside the coupons it read.
//
//	go test -run '^$' -bench 'BenchmarkWalletMemory' -benchtime 1x ./internal/coupon/qualify/
func BenchmarkWalletMemory(b *testing.B) {
	for _, n := range []int{20, 200} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(42, uint64(n)))
			pool := newTenantPool(b, rng, 400)
			inputs := make([]qualify.Input, benchWallets)
			for i := range inputs {
				inputs[i] = realisticWallet(b, rng, pool, n).input(realisticCart(rng, 5))
			}
			wallets := make([]*qualify.Wallet, benchWallets)
			for b.Loop() {
				before := heapAlloc()
				for i, in := range inputs {
					wallets[i] = qualify.NewWallet(in.Coupons, in.Templates)
				}
				b.ReportMetric(float64(heapAlloc()-before)/float64(n*benchWallets), "bytes/coupon")
			}
			runtime.KeepAlive(wallets)
		})
	}
}
