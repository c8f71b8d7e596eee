package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// sample is what one closed-loop run measured.
type sample struct {
	lat     []time.Duration
	ops     int
	errs    int
	elapsed time.Duration
	lastErr error
}

// closedLoop runs fn from conc workers, each calling it again as soon as it
// returns, for d; it records every call's latency.
func closedLoop(ctx context.Context, conc int, d time.Duration, fn func(ctx context.Context, worker int) error) sample {
	start := time.Now()
	end := start.Add(d)
	type result struct {
		lat  []time.Duration
		errs int
		last time.Time
		err  error
	}
	res := make([]result, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[w]
			r.lat = make([]time.Duration, 0, 1024)
			t0 := time.Now()
			for t0.Before(end) && ctx.Err() == nil {
				err := fn(ctx, w)
				t1 := time.Now()
				r.lat = append(r.lat, t1.Sub(t0))
				if err != nil {
					r.errs++
					r.err = err
				}
				r.last = t1
				t0 = t1
			}
		}()
	}
	wg.Wait()
	var s sample
	last := start
	for _, r := range res {
		s.lat = append(s.lat, r.lat...)
		s.errs += r.errs
		if r.err != nil {
			s.lastErr = r.err
		}
		if r.last.After(last) {
			last = r.last
		}
	}
	s.ops = len(s.lat)
	s.elapsed = last.Sub(start)
	return s
}

// agg accumulates samples of one variant over rounds.
type agg struct {
	rates   []float64 // per round, operations per second
	lat     []time.Duration
	ops     int
	errs    int
	elapsed time.Duration
	lastErr error
	sorted  bool
}

func (a *agg) add(s sample) {
	if s.elapsed > 0 {
		a.rates = append(a.rates, float64(s.ops)/s.elapsed.Seconds())
	}
	a.lat = append(a.lat, s.lat...)
	a.ops += s.ops
	a.errs += s.errs
	a.elapsed += s.elapsed
	if s.lastErr != nil {
		a.lastErr = s.lastErr
	}
	a.sorted = false
}

// rate is operations per second over the time the variant ran.
func (a *agg) rate() float64 {
	if a.elapsed <= 0 {
		return 0
	}
	return float64(a.ops) / a.elapsed.Seconds()
}

// pairedRatio is the median over rounds of a's throughput over b's in the
// same round: variants of one round ran back to back, so the ratio of a
// round is little touched by load that comes and goes on the machine.
func pairedRatio(a, b *agg) float64 {
	n := min(len(a.rates), len(b.rates))
	if n == 0 {
		return 0
	}
	r := make([]float64, 0, n)
	for i := range n {
		if b.rates[i] > 0 {
			r = append(r, a.rates[i]/b.rates[i])
		}
	}
	if len(r) == 0 {
		return 0
	}
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

func (a *agg) pct(q float64) time.Duration {
	if !a.sorted {
		slices.Sort(a.lat)
		a.sorted = true
	}
	return percentile(a.lat, q)
}

// percentile of sorted values: the smallest value with at least q of all at
// or below it.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// dist is a sorted set of durations.
type dist []time.Duration

func newDist(v []time.Duration) dist {
	d := slices.Clone(v)
	slices.Sort(d)
	return d
}

func (d dist) p(q float64) time.Duration { return percentile(d, q) }
func (d dist) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

// fmtDur prints a duration with three significant digits in a unit that
// suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDur(-d)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func fmtRate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

func fmtBytes(b float64) string {
	switch {
	case math.Abs(b) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case math.Abs(b) >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
