package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/embedetcd"
	"github.com/tokenbroker/tokenbroker/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

const (
	prefix   = "/tokenbroker/"
	connName = "bench"
	// recordKey is where the store keeps the record of connName.
	recordKey = prefix + "records/" + connName
)

// newLogger is the logger of every replica. By default it formats JSON at
// info level into io.Discard: the logging interceptor does the same work per
// call as in production (one "finished call" record), without the I/O that
// would swamp a benchmark. With debug, warnings and errors go to stderr.
func newLogger(debug bool) *slog.Logger {
	if debug {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// benchConfig is the configuration every replica of the bench runs: one
// Adobe connection against the fake, refresh-token grant.
func benchConfig(fakeURL string, ttl time.Duration) broker.Config {
	return broker.Config{
		Connections: []broker.ConnectionConfig{connConfig(connName, fakeURL)},
		Timing:      benchTiming(ttl),
	}
}

func benchTiming(ttl time.Duration) broker.Timing {
	return broker.Timing{
		ExpiryMargin: 5 * time.Second,
		// Storm and propagation rounds refresh on demand back to back; a
		// tiny interval keeps the refresh-loop brake out of the measurement.
		MinDemandInterval: time.Millisecond,
		TokenCallTimeout:  5 * time.Second, ClaimTTL: 10 * time.Second, Wait: 20 * time.Second,
		SessionTTL: ttl,
	}
}

var scopes = []string{"openid", "AdobeID", "offline_access", "additional_info.projectedProductContext"}

func connConfig(name, fakeURL string) broker.ConnectionConfig {
	return broker.ConnectionConfig{
		Name: name, Provider: broker.ProviderAdobe, Grant: broker.GrantRefreshToken,
		IMSURL: fakeURL, APIBaseURL: fakeURL,
		ClientID: fakeadobe.DefaultClientID, ClientSecret: fakeadobe.DefaultClientSecret,
		Scopes: scopes, GlobalCompanyID: fakeadobe.DefaultCompanyID,
	}
}

// cluster is embedded etcd, the fake Adobe and a shared keyring in a
// temporary directory; replicas join it in-process or as child processes.
type cluster struct {
	dir      string
	etcd     *embedetcd.Server
	fake     *fakeadobe.Server
	fakeURL  string
	fakeSrv  *http.Server
	keyFile  string
	keys     *seal.Keyring
	log      *slog.Logger
	debug    bool
	apiDelay atomic.Int64 // nanoseconds added before every /api/ answer (scenario 5)

	mu       sync.Mutex
	replicas []*replica
	clients  []*clientv3.Client
}

type clusterOptions struct {
	Debug bool
}

func newCluster(ctx context.Context, o clusterOptions) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", "tokenbroker-bench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, log: newLogger(o.Debug), debug: o.Debug}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	kf, err := seal.NewKeyFile(seal.File{}, "bench")
	if err != nil {
		return nil, err
	}
	if c.keys, err = kf.Keyring(); err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(kf)
	c.keyFile = filepath.Join(dir, "keyring.json")
	if err := os.WriteFile(c.keyFile, raw, 0o600); err != nil {
		return nil, err
	}
	ectx, cancel := context.WithTimeout(ctx, time.Minute)
	c.etcd, err = embedetcd.Start(ectx, embedetcd.Options{Dir: filepath.Join(dir, "etcd")})
	cancel()
	if err != nil {
		return nil, err
	}
	c.fake = fakeadobe.New(fakeadobe.Options{TokenLifetime: time.Hour})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c.fakeURL = "http://" + lis.Addr().String()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(c.apiDelay.Load()); d > 0 && len(r.URL.Path) > 5 && r.URL.Path[:5] == fakeadobe.APIPrefix {
			time.Sleep(d)
		}
		c.fake.ServeHTTP(w, r)
	})
	c.fakeSrv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go c.fakeSrv.Serve(lis)
	return c, nil
}

// newClient is another etcd client of the member, closed with the cluster.
func (c *cluster) newClient() (*clientv3.Client, error) {
	cli, err := c.etcd.NewClient()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.clients = append(c.clients, cli)
	c.mu.Unlock()
	return cli, nil
}

func (c *cluster) close() {
	c.mu.Lock()
	reps, clis := c.replicas, c.clients
	c.replicas, c.clients = nil, nil
	c.mu.Unlock()
	for _, r := range reps {
		r.shutdown(time.Second)
	}
	for _, cli := range clis {
		cli.Close()
	}
	if c.fakeSrv != nil {
		c.fakeSrv.Close()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
	os.RemoveAll(c.dir)
}

// tokenCalls is how many token-endpoint calls the fake has answered.
func (c *cluster) tokenCalls() int {
	n := 0
	for _, v := range c.fake.Stats().TokenCalls {
		n += v
	}
	return n
}

// revision is etcd's current revision: it grows by one with every write.
func (c *cluster) revision(ctx context.Context) (int64, error) {
	resp, err := c.etcd.Client.Get(ctx, "/bench/revision")
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// startReplica starts an in-process replica with its own etcd client; hook,
// if set, may wrap the client's KV or Watcher before the broker uses it.
func (c *cluster) startReplica(ctx context.Context, id string, ttl time.Duration, hook func(*clientv3.Client)) (*replica, error) {
	cli, err := c.newClient()
	if err != nil {
		return nil, err
	}
	if hook != nil {
		hook(cli)
	}
	r, err := startReplica(ctx, replicaOptions{
		Config: benchConfig(c.fakeURL, ttl), Client: cli, Keyring: c.keys, ID: id, Logger: c.log,
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.replicas = append(c.replicas, r)
	c.mu.Unlock()
	return r, nil
}

// seed gives the connection its first refresh token, as a login would, and
// waits until every replica of the cluster serves it.
func (c *cluster) seed(ctx context.Context, via *replica) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := via.B.Seed(sctx, connName, broker.Seed{RefreshToken: c.fake.IssueRefreshToken()}); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	c.mu.Lock()
	reps := append([]*replica(nil), c.replicas...)
	c.mu.Unlock()
	for _, r := range reps {
		if err := waitGeneration(sctx, r.B, 1); err != nil {
			return err
		}
	}
	return nil
}

// waitGeneration waits until b serves a token of generation gen or later.
func waitGeneration(ctx context.Context, b *broker.Broker, gen uint64) error {
	for {
		if tok, err := b.GetToken(ctx, connName, 0); err == nil && tok.Generation >= gen {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %s never served generation %d: %w", b.ID(), gen, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// replica is one broker replica serving gRPC on its own loopback port, wired
// like cmd/tokenbroker's runReplica: Prometheus server metrics first, then
// server.New's chain (request id, logging, auth, recovery). The bench's floor
// service is registered on the same grpc.Server.
type replica struct {
	ID    string
	B     *broker.Broker
	Srv   *server.Server
	Addr  string
	Floor *floorService

	stopBroker context.CancelFunc
	wg         sync.WaitGroup
	once       sync.Once
}

type replicaOptions struct {
	Config  broker.Config
	Client  *clientv3.Client
	Keyring *seal.Keyring
	ID      string
	Logger  *slog.Logger
}

func startReplica(ctx context.Context, o replicaOptions) (*replica, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := lis.Addr().String()
	b, err := broker.New(broker.Options{
		Config: o.Config, Client: o.Client, Prefix: prefix, Keyring: o.Keyring,
		ReplicaID: o.ID, Address: addr, Version: "bench", Logger: o.Logger,
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	srv := server.New(server.Options{
		Broker: b, Policy: server.Policy{Disabled: true}, Logger: o.Logger,
		Unary:  []grpc.UnaryServerInterceptor{grpcMetrics.UnaryServerInterceptor()},
		Stream: []grpc.StreamServerInterceptor{grpcMetrics.StreamServerInterceptor()},
	})
	floor := &floorService{}
	registerFloor(srv.GRPC, floor)
	grpcMetrics.InitializeMetrics(srv.GRPC)

	bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &replica{ID: o.ID, B: b, Srv: srv, Addr: addr, Floor: floor, stopBroker: stop}
	r.wg.Add(2)
	go func() { defer r.wg.Done(); b.Run(bctx) }()
	go func() { defer r.wg.Done(); srv.GRPC.Serve(lis) }()
	select {
	case <-b.Ready():
		srv.SetServing(true)
		return r, nil
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	r.shutdown(time.Second)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, errors.New("replica not ready within 30s")
}

// shutdown stops the replica as cmd/tokenbroker does on SIGTERM: health goes
// NOT_SERVING, the broker resigns leadership, calls drain within grace, then
// the broker stops.
func (r *replica) shutdown(grace time.Duration) {
	r.once.Do(func() {
		r.Srv.SetServing(false)
		r.B.StepDown()
		drained := make(chan struct{})
		go func() { r.Srv.GRPC.GracefulStop(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(grace):
			r.Srv.GRPC.Stop()
		}
		r.stopBroker()
		r.wg.Wait()
	})
}
