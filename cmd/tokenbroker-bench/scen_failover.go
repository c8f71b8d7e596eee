package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type leaderEvent struct {
	p       *proc
	leading bool
	at      time.Time
}

// replicaProcs runs replicas as child processes and follows their
// leadership events.
type replicaProcs struct {
	c      *cluster
	ttl    time.Duration
	debug  bool
	n      int
	events chan leaderEvent
	procs  []*proc
	leader *proc
}

func (rp *replicaProcs) start(ctx context.Context) (*proc, error) {
	rp.n++
	env := map[string]string{
		etcdEnv: rp.c.etcd.Endpoint, fakeEnv: rp.c.fakeURL, keyringEnv: rp.c.keyFile, ttlEnv: rp.ttl.String(),
	}
	p, err := spawn(roleReplica, fmt.Sprintf("proc-%d", rp.n), env, rp.debug)
	if err != nil {
		return nil, err
	}
	rp.procs = append(rp.procs, p)
	if _, err := p.expect(ctx, "ready", 30*time.Second); err != nil {
		return nil, err
	}
	go func() {
		for line := range p.lines {
			word, rest, _ := strings.Cut(line, " ")
			if word != "leading" && word != "following" {
				continue
			}
			ns, err := strconv.ParseInt(rest, 10, 64)
			if err != nil {
				continue
			}
			rp.events <- leaderEvent{p: p, leading: word == "leading", at: time.Unix(0, ns)}
		}
	}()
	return p, nil
}

// nextLeader waits for a replica other than not to report that it leads.
func (rp *replicaProcs) nextLeader(ctx context.Context, not *proc, timeout time.Duration) (leaderEvent, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev := <-rp.events:
			if ev.leading && ev.p != not {
				return ev, nil
			}
		case <-t.C:
			return leaderEvent{}, fmt.Errorf("no new leader within %v", timeout)
		case <-ctx.Done():
			return leaderEvent{}, ctx.Err()
		}
	}
}

func (rp *replicaProcs) stopAll() {
	for _, p := range rp.procs {
		p.stop(5 * time.Second)
	}
	rp.procs = nil
}

// failoverRounds kills the leader rounds times with sig and returns the time
// from the signal to the next leader, each round.
func failoverRounds(ctx context.Context, r *runner, rp *replicaProcs, sig syscall.Signal, rounds int) ([]time.Duration, error) {
	leader := rp.leader
	var out []time.Duration
	for range rounds {
		// Let the followers settle into the election queue.
		time.Sleep(300 * time.Millisecond)
		for len(rp.events) > 0 {
			<-rp.events
		}
		t0 := time.Now()
		if err := leader.signal(sig); err != nil {
			return out, err
		}
		ev, err := rp.nextLeader(ctx, leader, rp.ttl+15*time.Second)
		if err != nil {
			return out, err
		}
		d := ev.at.Sub(t0)
		out = append(out, d)
		r.logf("%s with session TTL %v: next leader after %s", sigName(sig), rp.ttl, fmtDur(d))
		select {
		case <-leader.exited:
		case <-time.After(10 * time.Second):
			return out, fmt.Errorf("old leader %s did not exit after %s", leader.id, sigName(sig))
		}
		if _, err := rp.start(ctx); err != nil {
			return out, err
		}
		leader = ev.p
		rp.leader = leader
	}
	return out, nil
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

func scenFailover(ctx context.Context, r *runner, s *section) error {
	if _, err := os.Executable(); err != nil {
		return err
	}
	c, err := newCluster(ctx, clusterOptions{Debug: r.debug})
	if err != nil {
		return err
	}
	defer c.close()
	s.para("Three replicas run as child processes (the bench binary re-executed with a role in its environment), each with its own etcd client and gRPC server, sharing the parent's embedded etcd. A replica reports when it starts leading (it polls its broker every millisecond). **SIGKILL**: the leader dies without a word; its etcd session (lease) must expire before the next replica in the election leads, so the session TTL bounds the failover. **SIGTERM**: the replica shuts down as `tokenbroker serve` does and resigns leadership first. Measured: from the signal to the moment the next replica leads. After each round a fresh replica replaces the one that stopped.")
	t := s.table("", "signal", "session TTL", "rounds", "each", "median", "max", "target", "")
	var term []time.Duration
	termTTL := r.sz.ttls[len(r.sz.ttls)-1]
	for _, ttl := range r.sz.ttls {
		rp := &replicaProcs{c: c, ttl: ttl, debug: r.debug, events: make(chan leaderEvent, 256)}
		err := func() error {
			defer rp.stopAll()
			for range 3 {
				if _, err := rp.start(ctx); err != nil {
					return err
				}
			}
			first, err := rp.nextLeader(ctx, nil, 30*time.Second)
			if err != nil {
				return err
			}
			rp.leader = first.p
			kills, err := failoverRounds(ctx, r, rp, syscall.SIGKILL, r.sz.killRounds)
			if err != nil {
				return err
			}
			d := newDist(kills)
			limit := ttl + time.Second
			ok := d.max() <= limit
			t.row("SIGKILL", ttl.String(), fmt.Sprint(len(kills)), joinDurs(kills), fmtDur(d.p(0.5)), fmtDur(d.max()), "≤ "+limit.String(), verdict(ok))
			r.target("4 Failover", fmt.Sprintf("SIGKILL of the leader, session TTL %v: next leader ≤ TTL + 1 s", ttl), fmt.Sprintf("max %s over %s", fmtDur(d.max()), plural(len(kills), "round")), ok)
			if ttl == termTTL {
				if term, err = failoverRounds(ctx, r, rp, syscall.SIGTERM, r.sz.termRounds); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	d := newDist(term)
	ok := d.max() < 100*time.Millisecond
	t.row("SIGTERM", termTTL.String(), fmt.Sprint(len(term)), joinDurs(term), fmtDur(d.p(0.5)), fmtDur(d.max()), "< 100 ms", verdict(ok))
	r.target("4 Failover", "graceful shutdown (SIGTERM) of the leader: next leader < 100 ms", fmt.Sprintf("max %s over %s", fmtDur(d.max()), plural(len(term), "round")), ok)
	s.note("An etcd lease expires between TTL − TTL/3 and TTL after the last keep-alive (the client renews every TTL/3) and etcd checks expiry every 500 ms, so a SIGKILL failover lands anywhere from about ⅔ TTL to TTL + 0.5 s.")
	return nil
}

func joinDurs(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmtDur(d)
	}
	return strings.Join(parts, ", ")
}
