package broker

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ReplicaInfo is what a replica registers about itself.
type ReplicaInfo struct {
	ID        string    `json:"id"`
	Address   string    `json:"address"`
	StartedAt time.Time `json:"started_at"`
	Version   string    `json:"version"`
	Leader    bool      `json:"-"`
}

// refreshRequest asks the leader to refresh a generation.
type refreshRequest struct {
	Generation uint64 `json:"generation"`
	Cause      Cause  `json:"cause"`
}

func (b *Broker) electionPrefix() string { return b.prefix + "election" }
func (b *Broker) replicaKey(id string) string {
	return b.prefix + "replicas/" + id
}
func (b *Broker) requestPrefix() string { return b.prefix + "requests/" }

// runSessions keeps an etcd session (a lease) for the replica: it registers
// the replica under it, observes the leader and campaigns. When the session
// is lost (etcd unreachable past the TTL, or the process was paused) the
// replica steps down and starts a new one.
func (b *Broker) runSessions(ctx context.Context) {
	ttl := int(b.timing.SessionTTL / time.Second)
	failures := 0
	for ctx.Err() == nil {
		select {
		case <-b.stepDown:
			return
		default:
		}
		sess, err := concurrency.NewSession(b.opts.Client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err != nil {
			failures++
			b.log.Warn("no etcd session; retrying", "err", err)
			b.sleep(ctx, backoff(failures, Timing{BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second}, rand.Float64(), 0))
			continue
		}
		failures = 0
		b.runSession(ctx, sess)
	}
}

func (b *Broker) runSession(ctx context.Context, sess *concurrency.Session) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	info := ReplicaInfo{ID: b.id, Address: b.opts.Address, StartedAt: b.started, Version: b.opts.Version}
	raw, _ := json.Marshal(info)
	if _, err := b.opts.Client.Put(sctx, b.replicaKey(b.id), string(raw), clientv3.WithLease(sess.Lease())); err != nil {
		b.log.Warn("registering replica failed", "err", err)
	}
	election := concurrency.NewElection(sess, b.electionPrefix())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.observe(sctx, election) }()
	lost := make(chan struct{})
	go func() { defer wg.Done(); b.campaign(sctx, sess, election, lost) }()
	select {
	case <-sess.Done():
		b.log.Warn("etcd session lost; stepping down")
	case <-lost:
		b.log.Warn("leadership lost; starting a new session")
	case <-ctx.Done():
	case <-b.stepDown:
	}
	graceful := ctx.Err() != nil || isClosed(b.stepDown)
	cancel()
	wg.Wait()
	if graceful {
		// Graceful stop: resign first so a successor leads at once, then
		// revoke the lease, which also removes the replica's registration.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if election.Key() != "" {
			if err := election.Resign(rctx); err != nil {
				b.log.Warn("resign failed", "err", err)
			} else {
				b.log.Info("resigned leadership")
			}
		}
		rcancel()
	}
	b.leading.Store(false)
	sess.Close()
}

// observe tracks who leads.
func (b *Broker) observe(ctx context.Context, e *concurrency.Election) {
	for ctx.Err() == nil {
		for resp := range e.Observe(ctx) {
			if len(resp.Kvs) > 0 {
				id := string(resp.Kvs[0].Value)
				b.leader.Store(&id)
			}
		}
		b.sleep(ctx, 200*time.Millisecond)
	}
}

// campaign waits to lead, then leads until the session or ctx ends or a
// fenced write finds that this replica no longer leads.
func (b *Broker) campaign(ctx context.Context, sess *concurrency.Session, e *concurrency.Election, lost chan<- struct{}) {
	if err := e.Campaign(ctx, b.id); err != nil {
		return
	}
	fence := Fence{Key: e.Key(), CreateRevision: e.Rev()}
	id := b.id
	b.leader.Store(&id)
	b.leading.Store(true)
	b.metrics.Leading(true)
	b.log.Info("leading", "election_key", e.Key(), "revision", e.Rev())
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	deposed := func() { once.Do(func() { close(lost); cancel() }) }
	wg.Add(1)
	go func() { defer wg.Done(); b.watchRequests(lctx) }()
	for _, name := range b.names {
		c := b.conns[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.lead(lctx, c, fence); errors.Is(err, ErrFenced) {
				deposed()
			}
		}()
	}
	select {
	case <-lctx.Done():
	case <-sess.Done():
	}
	cancel()
	wg.Wait()
	b.leading.Store(false)
	b.metrics.Leading(false)
	b.log.Info("no longer leading")
}

// watchRequests feeds refresh requests from every replica to the connection
// loops, and deletes requests that are done.
func (b *Broker) watchRequests(ctx context.Context) {
	for ctx.Err() == nil {
		resp, err := b.opts.Client.Get(ctx, b.requestPrefix(), clientv3.WithPrefix())
		if err != nil {
			b.sleep(ctx, 200*time.Millisecond)
			continue
		}
		for _, kv := range resp.Kvs {
			b.takeRequest(ctx, kv.Key, kv.Value, kv.ModRevision)
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wresp := range b.opts.Client.Watch(wctx, b.requestPrefix(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wresp.Err() != nil {
				break
			}
			for _, ev := range wresp.Events {
				if ev.Type == clientv3.EventTypePut {
					b.takeRequest(ctx, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
				}
			}
		}
		cancel()
	}
}

// dropRequest deletes a request that is done or malformed, unless it was
// written again since.
func (b *Broker) dropRequest(ctx context.Context, key string, rev int64) {
	b.opts.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
}

func (b *Broker) takeRequest(ctx context.Context, key, value []byte, rev int64) {
	rest := strings.TrimPrefix(string(key), b.requestPrefix())
	name, _, _ := strings.Cut(rest, "/")
	c, ok := b.conns[name]
	var req refreshRequest
	if !ok || json.Unmarshal(value, &req) != nil {
		b.dropRequest(ctx, string(key), rev)
		return
	}
	cur := c.cur.Load().Record.Generation
	if req.Generation < cur {
		// Done already: a newer token exists.
		b.dropRequest(ctx, string(key), rev)
		return
	}
	if req.Cause == CauseAdmin {
		c.admin.Store(true)
	} else {
		for {
			old := c.demand.Load()
			if old >= req.Generation+1 || c.demand.CompareAndSwap(old, req.Generation+1) {
				break
			}
		}
	}
	c.nudge()
}

// request asks the leader, through etcd, to refresh generation gen.
// Reports of one generation on this replica make one write: the first
// caller writes while the others wait for it, then find it done.
func (b *Broker) request(ctx context.Context, c *conn, gen uint64, cause Cause) error {
	if cause != CauseAdmin {
		if c.requested.Load() >= gen+1 {
			return nil // this replica asked already; the leader reads it from etcd
		}
		c.reqMu.Lock()
		defer c.reqMu.Unlock()
		if c.requested.Load() >= gen+1 {
			return nil
		}
	}
	raw, _ := json.Marshal(refreshRequest{Generation: gen, Cause: cause})
	key := b.requestPrefix() + c.cfg.Name + "/" + b.id + "-" + string(cause)
	// Without an etcd leader (quorum lost) a plain Put is retried by the etcd
	// client until the caller's deadline, so the caller would see its own
	// deadline pass instead of UNAVAILABLE, and a caller without a deadline
	// would wait until the quorum is back. Require a leader, which fails at
	// once, and bound the write by Timing.Wait like the wait that follows.
	pctx := clientv3.WithRequireLeader(ctx)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(pctx, b.timing.Wait)
		defer cancel()
	}
	if _, err := b.opts.Client.Put(pctx, key, string(raw)); err != nil {
		return storeErr(err)
	}
	if cause != CauseAdmin && c.requested.Load() < gen+1 {
		c.requested.Store(gen + 1) // under reqMu
	}
	return nil
}

// Replicas lists the live replicas.
func (b *Broker) Replicas(ctx context.Context) ([]ReplicaInfo, error) {
	resp, err := b.opts.Client.Get(ctx, b.prefix+"replicas/", clientv3.WithPrefix())
	if err != nil {
		return nil, storeErr(err)
	}
	leader := b.Leader()
	out := make([]ReplicaInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r ReplicaInfo
		if json.Unmarshal(kv.Value, &r) == nil {
			r.Leader = r.ID == leader
			out = append(out, r)
		}
	}
	return out, nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
