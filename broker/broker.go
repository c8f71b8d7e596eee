package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/tokenbroker/tokenbroker/broker/apiproxy"
	"github.com/tokenbroker/tokenbroker/broker/provider"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure a Broker.
type Options struct {
	Config Config
	// Client is the etcd client; Prefix the key prefix (default "/tokenbroker/").
	Client *clientv3.Client
	Prefix string
	// Keyring seals tokens at rest.
	Keyring *seal.Keyring
	// ReplicaID names this replica (default: random); Address is the gRPC
	// address it advertises; Version its build.
	ReplicaID string
	Address   string
	Version   string
	// Clock defaults to the real one; tests pass a fake.
	Clock clockwork.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// HTTPClient is used to call token endpoints (nil: provider default).
	HTTPClient *http.Client
	// Proxy configures CallAnalytics (client, size caps, Retry-After cap).
	Proxy apiproxy.Options
	// AfterTokenCall, if set, runs after the identity provider answered a
	// refresh and before the answer is stored: a failpoint for fault tests.
	AfterTokenCall func(connection string)
}

// Broker serves tokens from a watch-fed cache and, while it leads, refreshes them.
type Broker struct {
	opts   Options
	timing Timing
	clock  clockwork.Clock
	log    *slog.Logger
	store  *EtcdStore
	prefix string
	id     string

	conns map[string]*conn
	names []string // sorted

	ready     chan struct{}
	readyOnce sync.Once
	stepDown  chan struct{}
	stepOnce  sync.Once
	leader    atomic.Pointer[string]
	leading   atomic.Bool
	started   time.Time

	// inflight counts token calls whose results are not stored yet; Run
	// waits for them: their writes outlive leadership but not the process.
	inflight sync.WaitGroup
	metrics  Metrics
	proxy    *apiproxy.Proxy
}

// conn is one connection's config and cached state.
type conn struct {
	cfg  ConnectionConfig
	prov *provider.Client

	cur atomic.Pointer[Versioned]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every update

	wake      chan struct{} // nudges the leader loop (capacity 1)
	demand    atomic.Uint64 // leader: highest generation reported bad + 1
	admin     atomic.Bool   // leader: RefreshNow pending
	requested atomic.Uint64 // this replica: highest generation requested + 1
	reqMu     sync.Mutex    // serialises the write of a request

	refreshes     atomic.Uint64
	invalidations atomic.Uint64
}

// New builds a broker; Run starts it.
func New(opts Options) (*Broker, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Client == nil || opts.Keyring == nil {
		return nil, errors.New("broker: etcd client and keyring are required")
	}
	if opts.Prefix == "" {
		opts.Prefix = "/tokenbroker/"
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReplicaID == "" {
		opts.ReplicaID = fmt.Sprintf("replica-%08x", rand.Uint32())
	}
	b := &Broker{
		opts:     opts,
		timing:   opts.Config.Timing.WithDefaults(),
		clock:    opts.Clock,
		log:      opts.Logger.With("component", "broker", "replica", opts.ReplicaID),
		store:    NewEtcdStore(opts.Client, opts.Prefix, opts.Keyring),
		prefix:   opts.Prefix,
		id:       opts.ReplicaID,
		conns:    map[string]*conn{},
		ready:    make(chan struct{}),
		stepDown: make(chan struct{}),
	}
	b.metrics = nopMetrics{}
	if opts.Proxy.Logger == nil {
		opts.Proxy.Logger = b.log
	}
	b.proxy = apiproxy.New(tokens{b}, opts.Proxy)
	for _, cc := range opts.Config.Connections {
		cc = cc.WithDefaults()
		pc := provider.Config{
			TokenURL: cc.TokenURL, AuthURL: cc.AuthURL, ClientID: cc.ClientID, ClientSecret: cc.ClientSecret,
			AuthStyle: provider.AuthStyle(cc.AuthStyle), Scopes: cc.Scopes,
			ExpiresInMillis: strings.HasSuffix(strings.TrimRight(cc.TokenURL, "/"), "/ims/token/v1"),
			HTTPClient:      opts.HTTPClient, Now: opts.Clock.Now,
		}
		p, err := provider.New(pc)
		if err != nil {
			return nil, fmt.Errorf("connection %s: %w", cc.Name, err)
		}
		c := &conn{cfg: cc, prov: p, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
		c.cur.Store(&Versioned{})
		b.conns[cc.Name] = c
		b.names = append(b.names, cc.Name)
	}
	slices.Sort(b.names)
	return b, nil
}

// SetMetrics installs the metrics sink (before Run).
func (b *Broker) SetMetrics(m Metrics) { b.metrics = m }

// ID is this replica's id.
func (b *Broker) ID() string { return b.id }

// Ready is closed once the cache holds every record.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Leading reports whether this replica leads now.
func (b *Broker) Leading() bool { return b.leading.Load() }

// Leader is the id of the replica that leads, as last observed ("" if none).
func (b *Broker) Leader() string {
	if p := b.leader.Load(); p != nil {
		return *p
	}
	return ""
}

func (b *Broker) conn(name string) (*conn, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: connection is required", ErrInvalidArgument)
	}
	c, ok := b.conns[name]
	if !ok {
		if !ValidName(name) {
			return nil, fmt.Errorf("%w: connection name is malformed", ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return c, nil
}

// Run runs the replica until ctx ends: it keeps the cache in sync, registers
// the replica, campaigns for leadership and, while it leads, refreshes. On
// return it has resigned leadership and stored every token it obtained.
func (b *Broker) Run(ctx context.Context) error {
	b.started = b.clock.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.syncCache(ctx) }()
	go func() { defer wg.Done(); b.runSessions(ctx) }()
	wg.Wait()
	b.inflight.Wait()
	return nil
}

// StepDown resigns leadership at once and stops campaigning, while the cache
// keeps following etcd so that calls in flight still see new tokens: the
// first step of a graceful shutdown. Run still needs its context canceled.
func (b *Broker) StepDown() { b.stepOnce.Do(func() { close(b.stepDown) }) }

// apply puts a record into the cache if it is newer. Generations never go
// back: a lower generation than the cached one is ignored.
func (b *Broker) apply(name string, v Versioned) {
	c, ok := b.conns[name]
	if !ok || v.Revision == 0 {
		return
	}
	old := c.cur.Load()
	if old.Revision >= v.Revision || (old.Revision != 0 && v.Record.Generation < old.Record.Generation) {
		return
	}
	nv := v
	c.cur.Store(&nv)
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.nudge()
}

func (c *conn) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// watchChan returns the channel closed at the next update and the current state.
func (c *conn) watchChan() (<-chan struct{}, *Versioned) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed, c.cur.Load()
}

// syncCache loads every record, then follows the watch; when the watch breaks
// or is compacted it loads again.
func (b *Broker) syncCache(ctx context.Context) {
	log := b.log.With("loop", "cache")
	failures := 0
	for ctx.Err() == nil {
		all, rev, err := b.store.LoadAll(ctx)
		if err == nil {
			for name, v := range all {
				b.apply(name, v)
			}
			b.readyOnce.Do(func() { close(b.ready); log.Info("cache synced", "records", len(all), "revision", rev) })
			failures = 0
			err = b.store.Watch(ctx, rev, b.apply)
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		log.Warn("cache watch broke; resyncing", "err", err)
		b.sleep(ctx, backoff(failures, Timing{BackoffMin: 100 * time.Millisecond, BackoffMax: 2 * time.Second}, rand.Float64(), 0))
	}
}

// sleep waits for d of real time: retries against etcd follow the wall
// clock, not the token clock that tests replace.
func (b *Broker) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
