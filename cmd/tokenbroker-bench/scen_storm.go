package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
)

// connsPerReplica is how many client connections the storm's callers share
// per replica (as if that many services called it).
const connsPerReplica = 4

func scenStorm(ctx context.Context, r *runner, s *section) error {
	c, err := newCluster(ctx, clusterOptions{Debug: r.debug})
	if err != nil {
		return err
	}
	defer c.close()
	var reps []*replica
	for i := range 3 {
		rep, err := c.startReplica(ctx, fmt.Sprintf("replica-%d", i+1), 0, nil)
		if err != nil {
			return err
		}
		reps = append(reps, rep)
	}
	if err := c.seed(ctx, reps[0]); err != nil {
		return err
	}
	lat := r.sz.stormLat
	c.fake.SetLatency(lat)
	defer c.fake.SetLatency(0)

	var cls []*clients.Client
	defer func() {
		for _, cl := range cls {
			cl.Close()
		}
	}()
	for _, rep := range reps {
		for range connsPerReplica {
			cl, err := clients.Dial(rep.Addr, clients.WithInsecure())
			if err != nil {
				return err
			}
			cls = append(cls, cl)
			if _, err := cl.GetToken(ctx, connName, 0); err != nil {
				return fmt.Errorf("warm-up GetToken on %s: %w", rep.ID, err)
			}
		}
	}

	n := r.sz.stormN
	s.para("%d callers spread evenly over 3 replicas (%d client connections each, `clients.Dial`) all call `Invalidate` with the same generation at once (released together from a barrier). The fake identity provider answers token calls after **%v**. Measured per caller: time from the release until `Invalidate` returned the new token. Identity-provider calls are counted by the fake (including any that come up to 200 ms after the last caller returned). Just before each storm the same callers, released the same way, each call `GetToken` instead: the **GetToken burst** is what answering %d simultaneous RPCs costs on this machine, with no refresh at all. %d rounds.", n, connsPerReplica, lat, n, r.sz.stormRuns)
	t := s.table("", "round", "callers", "IdP calls", "etcd writes", "new generation for all", "p50", "p99", "max", "errors", "GetToken burst p50", "GetToken burst p99")
	var all []time.Duration
	var floorAll []time.Duration
	maxCalls, allNew, exactlyOne := 0, true, true
	for round := range r.sz.stormRuns {
		tok, err := reps[0].B.GetToken(ctx, connName, 0)
		if err != nil {
			return err
		}
		gen := tok.Generation
		for _, rep := range reps {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := waitGeneration(wctx, rep.B, gen)
			cancel()
			if err != nil {
				return err
			}
		}
		before := c.tokenCalls()
		rev0, err := c.revision(ctx)
		if err != nil {
			return err
		}
		// The fan-out floor: the same callers, released the same way, each
		// with a GetToken (no refresh), just before the storm.
		floorTook, _, floorErrs := burst(ctx, n, func(ctx context.Context, i int) (uint64, error) {
			tok, err := cls[i%len(cls)].GetToken(ctx, connName, 0)
			if err != nil {
				return 0, err
			}
			return tok.Generation, nil
		})
		if e := firstError(floorErrs); e != nil {
			return fmt.Errorf("GetToken burst: %w", e)
		}
		fd := newDist(floorTook)
		floorAll = append(floorAll, floorTook...)
		time.Sleep(50 * time.Millisecond)
		took, gens, errs := burst(ctx, n, func(ctx context.Context, i int) (uint64, error) {
			tok, err := cls[i%len(cls)].Invalidate(ctx, connName, gen, "bench: storm")
			if err != nil {
				return 0, err
			}
			return tok.Generation, nil
		})
		time.Sleep(200 * time.Millisecond)
		calls := c.tokenCalls() - before
		rev1, err := c.revision(ctx)
		if err != nil {
			return err
		}
		writes := rev1 - rev0
		nerr, fresh := 0, true
		var lastErr error
		for i := range n {
			if errs[i] != nil {
				nerr++
				lastErr = errs[i]
			} else if gens[i] != gen+1 {
				fresh = false
			}
		}
		if nerr > 0 {
			fresh = false
		}
		d := newDist(took)
		all = append(all, took...)
		maxCalls = max(maxCalls, calls)
		allNew = allNew && fresh
		t.row(fmt.Sprint(round+1), fmt.Sprint(n), fmt.Sprint(calls), fmt.Sprint(writes), yesNo(fresh), fmtDur(d.p(0.5)), fmtDur(d.p(0.99)), fmtDur(d.max()), errCell(nerr, lastErr), fmtDur(fd.p(0.5)), fmtDur(fd.p(0.99)))
		r.logf("round %d: %d IdP calls, %d etcd writes, p50 %s, p99 %s (GetToken burst p99 %s)", round+1, calls, writes, fmtDur(d.p(0.5)), fmtDur(d.p(0.99)), fmtDur(fd.p(0.99)))
		exactlyOne = exactlyOne && calls == 1
	}
	d, fd := newDist(all), newDist(floorAll)
	if r.sz.stormRuns > 1 {
		t.row("all", fmt.Sprint(len(all)), "", "", "", fmtDur(d.p(0.5)), fmtDur(d.p(0.99)), fmtDur(d.max()), "", fmtDur(fd.p(0.5)), fmtDur(fd.p(0.99)))
	}
	limit := lat + 50*time.Millisecond
	s.note("The floor of this measure is one identity-provider round trip (%v), three etcd writes (a refresh request, the leader's claim, the result) with two linearizable reads and the watch, and dispatching %d RPCs on the shared cores.", lat, n)
	s.note("**etcd writes** is how far etcd's revision moved during the round (every write counts). With one write per caller, the likely cause is `broker.request`: a replica marks a generation as requested (`conn.requested`) only after its request's etcd Put returns, so every caller that arrives while that Put is in flight puts the same request again; those writes queue in etcd ahead of the leader's claim and result. Sharing the in-flight Put among a replica's callers would leave about one request per replica.")
	r.target("2 Invalidate storm", fmt.Sprintf("identity-provider calls per storm of %d callers = 1", n), stormCalls(exactlyOne, allNew, maxCalls), exactlyOne && allNew)
	r.target("2 Invalidate storm", fmt.Sprintf("p99 until every caller holds the new token ≤ provider latency + 50 ms (%v)", limit), fmtDur(d.p(0.99))+fmt.Sprintf(" (p50 %s)", fmtDur(d.p(0.5))), d.p(0.99) <= limit)
	over := d.p(0.99) - fd.p(0.99)
	r.aside("2 Invalidate storm", "storm p99 − p99 of the same burst of GetToken ≤ provider latency + 50 ms", fmtDur(over)+fmt.Sprintf(" (burst p99 %s)", fmtDur(fd.p(0.99))), over <= limit)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func stormCalls(exactlyOne, allNew bool, maxCalls int) string {
	switch {
	case exactlyOne && allNew:
		return "1 in every round"
	case exactlyOne:
		return "1 in every round, but not every caller got the next generation"
	default:
		return fmt.Sprintf("not 1 in every round (at most %d)", maxCalls)
	}
}

// burst starts n callers, parks them at a barrier, releases them together
// and returns, per caller, the time from the release until fn returned.
func burst(ctx context.Context, n int, fn func(ctx context.Context, i int) (uint64, error)) ([]time.Duration, []uint64, []error) {
	took := make([]time.Duration, n)
	gens := make([]uint64, n)
	errs := make([]error, n)
	release := make(chan struct{})
	var parked, done sync.WaitGroup
	var t0 time.Time
	for i := range n {
		parked.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			parked.Done()
			<-release
			gens[i], errs[i] = fn(cctx, i)
			took[i] = time.Since(t0)
		}()
	}
	parked.Wait()
	time.Sleep(10 * time.Millisecond) // let every caller reach the barrier
	t0 = time.Now()
	close(release)
	done.Wait()
	return took, gens, errs
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
