package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// recordGen reads the generation of a stored record and whether it carries a
// claim (a refresh in flight) without opening its sealed tokens.
func recordGen(raw []byte) (gen uint64, claimed bool, ok bool) {
	var r struct {
		Generation uint64          `json:"generation"`
		Claim      json.RawMessage `json:"claim"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return 0, false, false
	}
	return r.Generation, len(r.Claim) > 0 && string(r.Claim) != "null", true
}

// writeClock records, on the leader's etcd client, when the write that
// stores each generation of the record was sent: the KV's Txn is wrapped and
// the time taken just before Commit.
type writeClock struct {
	mu sync.Mutex
	at map[uint64]time.Time
}

func (w *writeClock) get(gen uint64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.at[gen]
	return t, ok
}

type timedKV struct {
	clientv3.KV
	clock *writeClock
}

func (k timedKV) Txn(ctx context.Context) clientv3.Txn {
	return &timedTxn{Txn: k.KV.Txn(ctx), clock: k.clock}
}

type timedTxn struct {
	clientv3.Txn
	clock *writeClock
	gen   uint64
	put   bool
}

func (t *timedTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.Txn = t.Txn.If(cs...); return t }
func (t *timedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}
func (t *timedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	for _, op := range ops {
		if op.IsPut() && string(op.KeyBytes()) == recordKey {
			if gen, claimed, ok := recordGen(op.ValueBytes()); ok && !claimed {
				t.gen, t.put = gen, true
			}
		}
	}
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t *timedTxn) Commit() (*clientv3.TxnResponse, error) {
	if t.put {
		now := time.Now()
		t.clock.mu.Lock()
		if _, seen := t.clock.at[t.gen]; !seen {
			t.clock.at[t.gen] = now
		}
		t.clock.mu.Unlock()
	}
	return t.Txn.Commit()
}

// genEvent is a watch event of the record, with when the replica's client
// received it.
type genEvent struct {
	gen uint64
	at  time.Time
}

// notifyWatcher passes the watch of the records through, and tells the bench
// when an event of the record arrives (before the broker sees it).
type notifyWatcher struct {
	clientv3.Watcher
	events chan genEvent
}

func (w *notifyWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	if key != prefix+"records/" {
		return in
	}
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for resp := range in {
			now := time.Now()
			for _, ev := range resp.Events {
				if string(ev.Kv.Key) != recordKey || ev.Type != clientv3.EventTypePut {
					continue
				}
				if gen, claimed, ok := recordGen(ev.Kv.Value); ok && !claimed {
					select {
					case w.events <- genEvent{gen: gen, at: now}:
					default:
					}
				}
			}
			select {
			case out <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func scenPropagation(ctx context.Context, r *runner, s *section) error {
	c, err := newCluster(ctx, clusterOptions{Debug: r.debug})
	if err != nil {
		return err
	}
	defer c.close()
	clock := &writeClock{at: map[uint64]time.Time{}}
	var reps []*replica
	var events []chan genEvent
	for i := range 3 {
		ev := make(chan genEvent, 16)
		events = append(events, ev)
		rep, err := c.startReplica(ctx, fmt.Sprintf("replica-%d", i+1), 0, func(cli *clientv3.Client) {
			cli.KV = timedKV{KV: cli.KV, clock: clock}
			cli.Watcher = &notifyWatcher{Watcher: cli.Watcher, events: ev}
		})
		if err != nil {
			return err
		}
		reps = append(reps, rep)
	}
	if err := c.seed(ctx, reps[0]); err != nil {
		return err
	}

	// The etcd baseline: a put from one client, watched from three others.
	putter, err := c.newClient()
	if err != nil {
		return err
	}
	const pingKey = "/bench/ping"
	type seen struct {
		val string
		at  time.Time
	}
	pings := make(chan seen, 64)
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	for range 3 {
		wcli, err := c.newClient()
		if err != nil {
			return err
		}
		wch := wcli.Watch(wctx, pingKey)
		go func() {
			for resp := range wch {
				now := time.Now()
				for _, ev := range resp.Events {
					pings <- seen{string(ev.Kv.Value), now}
				}
			}
		}()
	}
	// Make sure the watches are established.
	for i := 0; ; i++ {
		if _, err := putter.Put(ctx, pingKey, "warm"); err != nil {
			return err
		}
		got := 0
		timeout := time.After(time.Second)
	drain:
		for got < 3 {
			select {
			case <-pings:
				got++
			case <-timeout:
				break drain
			}
		}
		if got == 3 || i == 10 {
			break
		}
	}

	var etcdOne, etcdAll, evOne, serveOne, serveAll []time.Duration
	missing := 0
	for round := range r.sz.propRounds {
		// etcd put → watch.
		val := strconv.Itoa(round)
		t0 := time.Now()
		if _, err := putter.Put(ctx, pingKey, val); err != nil {
			return err
		}
		var last time.Duration
		for got := 0; got < 3; {
			select {
			case p := <-pings:
				if p.val != val {
					continue
				}
				d := p.at.Sub(t0)
				etcdOne = append(etcdOne, d)
				last = max(last, d)
				got++
			case <-time.After(5 * time.Second):
				return fmt.Errorf("etcd watch did not deliver the put within 5s")
			}
		}
		etcdAll = append(etcdAll, last)

		// Leader write → every replica serving.
		tok, err := reps[0].B.GetToken(ctx, connName, 0)
		if err != nil {
			return err
		}
		gen := tok.Generation
		for _, rep := range reps {
			if err := waitGeneration(ctx, rep.B, gen); err != nil {
				return err
			}
		}
		for _, ev := range events {
			for len(ev) > 0 {
				<-ev
			}
		}
		type obs struct{ event, serve time.Time }
		got := make([]obs, len(reps))
		var wg sync.WaitGroup
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		for i, rep := range reps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case e := <-events[i]:
						if e.gen <= gen {
							continue
						}
						got[i].event = e.at
					case <-octx.Done():
						return
					}
					break
				}
				// The event is in; spin on the cache until it serves.
				for octx.Err() == nil {
					if t, err := rep.B.GetToken(octx, connName, 0); err == nil && t.Generation > gen {
						got[i].serve = time.Now()
						return
					}
					runtime.Gosched()
				}
			}()
		}
		trigger := reps[round%len(reps)]
		if _, err := trigger.B.RefreshNow(octx, connName); err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("RefreshNow: %w", err)
		}
		wg.Wait()
		cancel()
		wt, ok := clock.get(gen + 1)
		if !ok {
			return fmt.Errorf("no write of generation %d seen on any replica's client", gen+1)
		}
		var worst time.Duration
		complete := true
		for _, o := range got {
			if o.serve.IsZero() {
				complete = false
				continue
			}
			evOne = append(evOne, o.event.Sub(wt))
			serveOne = append(serveOne, o.serve.Sub(wt))
			worst = max(worst, o.serve.Sub(wt))
		}
		if !complete {
			missing++
			continue
		}
		serveAll = append(serveAll, worst)
	}
	if missing > 0 {
		return fmt.Errorf("%d rounds: a replica did not serve the new generation within 10s", missing)
	}

	s.para("Three in-process replicas, each with its own etcd client. Each round the bench asks a replica to `RefreshNow` (the fake answers at once); the leader stores the new generation. **Leader write** is when the leader's client sent that write (the bench wraps the client's KV and takes the time just before the transaction's Commit). On each replica the bench wraps the watch of the records to note when the event arrives at that replica's client, then spins on the replica's in-process `GetToken` until it serves the new generation. In the same run, before each round, the etcd baseline: one client puts a key that three other clients watch. %d rounds.", r.sz.propRounds)
	t := s.table("", "path", "samples", "p50", "p99", "max")
	row := func(name string, v []time.Duration) {
		d := newDist(v)
		t.row(name, fmt.Sprint(len(d)), fmtDur(d.p(0.5)), fmtDur(d.p(0.99)), fmtDur(d.max()))
	}
	row("etcd: put → one watcher sees it", etcdOne)
	row("etcd: put → all 3 watchers saw it", etcdAll)
	row("broker: leader write → watch event at a replica", evOne)
	row("broker: leader write → a replica serves it", serveOne)
	row("broker: leader write → every replica serves it", serveAll)
	s.note("With %d rounds the p99 is the worst round or close to it.", r.sz.propRounds)
	s.note("The bench's watch wrapper adds one channel hand-off (and a JSON read of the generation) to the replicas' watch path, so the broker rows include a few microseconds that production does not.")

	base := newDist(etcdOne).p(0.99)
	got := newDist(serveAll).p(0.99)
	r.target("3 Propagation", fmt.Sprintf("p99 leader write → every replica serves ≤ 2 × etcd put→watch p99 (%s)", fmtDur(2*base)), fmt.Sprintf("%s (%.2f × etcd)", fmtDur(got), float64(got)/float64(base)), got <= 2*base)
	return nil
}
