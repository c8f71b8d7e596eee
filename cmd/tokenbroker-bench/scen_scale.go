package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func scaleName(i int) string { return fmt.Sprintf("conn-%05d", i) }

// scaleConfig is n refresh-token connections against the fake.
func scaleConfig(fakeURL string, n int) broker.Config {
	cfg := broker.Config{Timing: benchTiming(0)}
	cfg.Connections = make([]broker.ConnectionConfig, n)
	for i := range n {
		cfg.Connections[i] = connConfig(scaleName(i), fakeURL)
	}
	return cfg
}

func fakeToken(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// mem2 is live heap and goroutine stacks.
type mem2 struct {
	Heap   float64 `json:"heap"`
	Stacks float64 `json:"stacks"`
}

func mem2Of(m memory) mem2 { return mem2{Heap: float64(m.heap), Stacks: float64(m.stacks)} }

func (m mem2) total() float64 { return m.Heap + m.Stacks }

func (m mem2) minus(o mem2) mem2 { return mem2{Heap: m.Heap - o.Heap, Stacks: m.Stacks - o.Stacks} }

// scaleResult is what the scale child reports.
type scaleResult struct {
	Conns           int     `json:"conns"`
	ReadyNanos      int64   `json:"ready_ns"`
	Base            mem2    `json:"base"`
	AtReady         mem2    `json:"at_ready"`
	AtLead          mem2    `json:"at_lead"`
	RSSBase         uint64  `json:"rss_base"`
	RSSLead         uint64  `json:"rss_lead"`
	GoroutinesReady int     `json:"goroutines_ready"`
	GoroutinesLead  int     `json:"goroutines_lead"`
	Leading         bool    `json:"leading"`
	ConfigBytes     float64 `json:"config_bytes"`
}

// childScale measures one broker with many connections whose records are in
// etcd already: time from New to Ready, then live heap and stacks (after a
// forced GC) over the baseline, as a follower and then as the leader.
func childScale(ctx context.Context) error {
	e, err := readChildEnv()
	if err != nil {
		return err
	}
	cli, err := e.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "/bench/connected"); err != nil {
		return err
	}
	base := liveMemory()
	cfg := scaleConfig(e.fake, e.conns)
	afterCfg := liveMemory()
	res := scaleResult{Conns: e.conns, Base: mem2Of(base), RSSBase: base.rss,
		ConfigBytes: float64(afterCfg.heap+afterCfg.stacks) - float64(base.heap+base.stacks)}
	t0 := time.Now()
	b, err := broker.New(broker.Options{Config: cfg, Client: cli, Prefix: prefix, Keyring: e.keys, ReplicaID: "scale", Logger: newLogger(e.debug)})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Run(rctx) }()
	defer func() { cancel(); wg.Wait() }()
	select {
	case <-b.Ready():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("not ready after 2 minutes")
	case <-ctx.Done():
		return ctx.Err()
	}
	res.ReadyNanos = int64(time.Since(t0))
	m := liveMemory()
	res.AtReady = mem2Of(m)
	res.GoroutinesReady = runtime.NumGoroutine()
	res.Leading = b.Leading()
	raw, _ := json.Marshal(res)
	emit("synced %s", raw)
	// The parent holds the election until it has read the above; then this
	// replica leads: one refresh loop per connection.
	deadline := time.Now().Add(30 * time.Second)
	for !b.Leading() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	res.Leading = b.Leading()
	// Settle: until the goroutine count holds still for half a second.
	last, still := runtime.NumGoroutine(), time.Now()
	for time.Since(still) < 500*time.Millisecond && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != last {
			last, still = n, time.Now()
		}
	}
	m = liveMemory()
	res.AtLead = mem2Of(m)
	res.RSSLead = m.rss
	res.GoroutinesLead = runtime.NumGoroutine()
	raw, _ = json.Marshal(res)
	emit("result %s", raw)
	return nil
}

func scenScale(ctx context.Context, r *runner, s *section) error {
	c, err := newCluster(ctx, clusterOptions{Debug: r.debug})
	if err != nil {
		return err
	}
	defer c.close()
	n := r.sz.scaleConns
	store := broker.NewEtcdStore(c.etcd.Client, prefix, c.keys)
	now := time.Now()
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	seedStart := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				rec := broker.Record{
					Generation: 1, AccessToken: fakeToken("fat_"), RefreshToken: fakeToken("frt_"), TokenType: "bearer",
					ObtainedAt: now, ExpiresAt: now.Add(24 * time.Hour), LoginAt: now,
					State: broker.StateOK, LastResult: "ok", LastRefreshAt: now, LastAttemptAt: now, LastCause: broker.CauseSeed,
				}
				if _, err := store.Put(ctx, scaleName(i), rec, broker.Cond{}); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("writing records: %w", firstErr)
	}
	r.logf("wrote %d records in %s", n, time.Since(seedStart).Round(time.Millisecond))

	env := map[string]string{etcdEnv: c.etcd.Endpoint, fakeEnv: c.fakeURL, keyringEnv: c.keyFile, connsEnv: strconv.Itoa(n)}
	// Hold the election so that the new broker first syncs as a follower.
	sess, err := concurrency.NewSession(c.etcd.Client, concurrency.WithTTL(10))
	if err != nil {
		return err
	}
	defer sess.Close()
	election := concurrency.NewElection(sess, prefix+"election")
	if err := election.Campaign(ctx, "bench-holder"); err != nil {
		return err
	}
	p, err := spawn(roleScale, "scale", env, r.debug)
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	line, err := p.expect(ctx, "synced", 3*time.Minute)
	if err != nil {
		return err
	}
	var synced scaleResult
	if err := json.Unmarshal([]byte(line), &synced); err != nil {
		return fmt.Errorf("scale result: %w", err)
	}
	if synced.Leading {
		return fmt.Errorf("the scale broker led before the bench released the election")
	}
	if err := election.Resign(ctx); err != nil {
		return err
	}
	if line, err = p.expect(ctx, "result", time.Minute); err != nil {
		return err
	}
	var res scaleResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return fmt.Errorf("scale result: %w", err)
	}
	ready := time.Duration(res.ReadyNanos)
	dReady, dLead := res.AtReady.minus(res.Base), res.AtLead.minus(res.Base)
	perReady, perLead := dReady.total()/float64(n), dLead.total()/float64(n)
	s.para("%d refresh-token connections whose records (valid tokens, sealed with the keyring) were written to etcd beforehand through `broker.EtcdStore`. A fresh broker in a process of its own (the bench re-executed) builds the configuration, then is timed from `broker.New` until `Ready` (every record loaded, opened and cached). Memory is live heap plus goroutine stacks after a forced GC, minus the baseline taken before the configuration was built (so the configuration counts). Meanwhile the bench holds the election, so this is a follower's state; then the bench resigns, the new broker leads (one refresh loop per connection) and is measured again once its goroutine count holds still.", n)
	t := s.table("", "connections", "New → Ready", "state", "heap over baseline", "stacks over baseline", "per connection", "goroutines")
	t.row(fmt.Sprint(n), fmtDur(ready), "cache synced (follower)", fmtBytes(dReady.Heap), fmtBytes(dReady.Stacks), fmtBytes(perReady), fmt.Sprint(res.GoroutinesReady))
	t.row(fmt.Sprint(n), "", leadState(res.Leading), fmtBytes(dLead.Heap), fmtBytes(dLead.Stacks), fmtBytes(perLead), fmt.Sprint(res.GoroutinesLead))
	s.note("Of that, the configuration itself (%d `ConnectionConfig`s) takes %s, %s per connection.", n, fmtBytes(res.ConfigBytes), fmtBytes(res.ConfigBytes/float64(n)))
	if res.GoroutinesLead > res.GoroutinesReady {
		s.note("Leading adds one goroutine per connection (its refresh loop): %s of stacks per goroutine, most of the leader's cost per connection.", fmtBytes((dLead.Stacks-dReady.Stacks)/float64(res.GoroutinesLead-res.GoroutinesReady)))
	}
	s.note("RSS of the process: %s at the baseline, %s when leading.", fmtBytes(float64(res.RSSBase)), fmtBytes(float64(res.RSSLead)))
	worst := max(perReady, perLead)
	r.target("6 Scale", fmt.Sprintf("memory per connection ≤ 8 KiB (%d connections, worst of follower and leader)", n), fmtBytes(worst), worst <= 8<<10)
	r.target("6 Scale", fmt.Sprintf("time from New to Ready with %d connections < 5 s", n), fmtDur(ready), ready < 5*time.Second)
	return nil
}

func leadState(leading bool) string {
	if leading {
		return "leading"
	}
	return "not leading after 30 s"
}
