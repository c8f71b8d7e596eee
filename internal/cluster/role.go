package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Environment of a child process.
const (
	// EnvRole selects what a re-executed test binary runs: RoleEtcd or RoleReplica.
	EnvRole = "TOKENBROKER_HARNESS_ROLE"
	// EnvConfig holds the role's configuration as JSON.
	EnvConfig = "TOKENBROKER_HARNESS_CONFIG"
	// EnvCrashAfterTokenCall, set to "1" in a replica, makes the process exit
	// with code CrashExitCode right after the identity provider answered a
	// refresh and before the answer is stored: a crash at the worst moment.
	EnvCrashAfterTokenCall = "TOKENBROKER_HARNESS_CRASH_AFTER_TOKEN_CALL"

	RoleEtcd    = "etcd"
	RoleReplica = "replica"

	// CrashExitCode is the exit code of the crash failpoint.
	CrashExitCode = 3
	// LeadingService is a health service name that a replica reports SERVING
	// while it leads, as it sees itself (no etcd round trip).
	LeadingService = "tokenbroker.harness.Leading"
)

// MaybeRunRole runs the role that EnvRole selects and exits; without EnvRole
// it returns at once. Call it first thing in TestMain of every package that
// uses the harness: the harness starts etcd members and replicas by
// re-executing the test binary.
func MaybeRunRole() {
	role := os.Getenv(EnvRole)
	if role == "" {
		return
	}
	var err error
	switch role {
	case RoleEtcd:
		err = runEtcdRole()
	case RoleReplica:
		err = runReplicaRole()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// etcdSpec configures one etcd member process.
type etcdSpec struct {
	Name           string `json:"name"`
	Dir            string `json:"dir"`
	ClientURL      string `json:"client_url"`
	PeerURL        string `json:"peer_url"`
	InitialCluster string `json:"initial_cluster"`
}

func readConfig(v any) error {
	raw := os.Getenv(EnvConfig)
	if raw == "" {
		return fmt.Errorf("%s is empty", EnvConfig)
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		return fmt.Errorf("%s: %w", EnvConfig, err)
	}
	return nil
}

// runEtcdRole runs one embedded etcd member until SIGTERM or SIGINT.
func runEtcdRole() error {
	var spec etcdSpec
	if err := readConfig(&spec); err != nil {
		return err
	}
	cu, err := url.Parse(spec.ClientURL)
	if err != nil {
		return err
	}
	pu, err := url.Parse(spec.PeerURL)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = spec.Name
	cfg.Dir = spec.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = spec.InitialCluster
	cfg.InitialClusterToken = "tokenbroker-harness"
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored once the data dir holds a WAL
	// SIGKILL loses nothing the kernel already has; fsync only slows a shared
	// machine down (this is not a power-loss test).
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer e.Close()
	fmt.Fprintf(os.Stderr, "harness etcd %s: started, client %s peer %s\n", spec.Name, spec.ClientURL, spec.PeerURL)
	select {
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-ctx.Done():
		fmt.Fprintf(os.Stderr, "harness etcd %s: stopping\n", spec.Name)
		return nil
	}
}

// replicaSpec configures one broker replica process.
type replicaSpec struct {
	ID        string                    `json:"id"`
	Listen    string                    `json:"listen"`
	Endpoints []string                  `json:"endpoints"`
	Prefix    string                    `json:"prefix"`
	KeyID     string                    `json:"key_id"`
	Key       string                    `json:"key"` // base64
	Conns     []broker.ConnectionConfig `json:"connections"`
	Timing    broker.Timing             `json:"timing"`
	LogLevel  slog.Level                `json:"log_level"`
}

// runReplicaRole runs broker.New + broker.Run + server.New (plaintext,
// authentication disabled) until SIGTERM or SIGINT, then stops gracefully.
func runReplicaRole() error {
	var spec replicaSpec
	if err := readConfig(&spec); err != nil {
		return err
	}
	log := slog.New(quietCalls{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: spec.LogLevel})})
	keys, err := seal.File{Primary: spec.KeyID, Keys: map[string]string{spec.KeyID: spec.Key}}.Keyring()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            spec.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	opts := broker.Options{
		Config:    broker.Config{Connections: spec.Conns, Timing: spec.Timing},
		Client:    cli,
		Prefix:    spec.Prefix,
		Keyring:   keys,
		ReplicaID: spec.ID,
		Address:   spec.Listen,
		Version:   "harness",
		Logger:    log,
	}
	if os.Getenv(EnvCrashAfterTokenCall) == "1" {
		opts.AfterTokenCall = func(conn string) {
			fmt.Fprintf(os.Stderr, "harness replica %s: crash failpoint: exiting with code %d after the token call of %s, before storing its answer\n", spec.ID, CrashExitCode, conn)
			os.Exit(CrashExitCode)
		}
	}
	b, err := broker.New(opts)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", spec.Listen)
	if err != nil {
		return err
	}
	srv := server.New(server.Options{Broker: b, Policy: server.Policy{Disabled: true}, Logger: log})
	srv.Health.SetServingStatus(LeadingService, healthpb.HealthCheckResponse_NOT_SERVING)

	sigctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	bctx, stopBroker := context.WithCancel(context.Background())
	defer stopBroker()
	ran := make(chan struct{})
	go func() { _ = b.Run(bctx); close(ran) }()
	served := make(chan error, 1)
	go func() { served <- srv.GRPC.Serve(lis) }()
	go func() {
		// Mirror b.Leading() into the health service, for the harness.
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		last := false
		for {
			select {
			case <-ran:
				return
			case <-t.C:
			}
			if l := b.Leading(); l != last {
				last = l
				st := healthpb.HealthCheckResponse_NOT_SERVING
				if l {
					st = healthpb.HealthCheckResponse_SERVING
				}
				srv.Health.SetServingStatus(LeadingService, st)
			}
		}
	}()
	select {
	case <-b.Ready():
		srv.SetServing(true)
		log.Info("harness replica serving", "addr", spec.Listen)
	case <-sigctx.Done():
	case err := <-served:
		return fmt.Errorf("grpc: %w", err)
	}
	select {
	case <-sigctx.Done():
	case err := <-served:
		return fmt.Errorf("grpc: %w", err)
	}
	// Graceful stop, as cmd/tokenbroker does it: NOT_SERVING, hand the
	// leadership over while the cache still follows etcd, drain the calls in
	// flight, then stop the broker (which stores what it has in flight).
	log.Info("harness replica stopping")
	srv.SetServing(false)
	b.StepDown()
	drained := make(chan struct{})
	go func() { srv.GRPC.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		srv.GRPC.Stop()
	}
	stopBroker()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		return errors.New("broker.Run did not return within 30s of SIGTERM")
	}
	log.Info("harness replica stopped")
	return nil
}

// encodeKey is the base64 form a replicaSpec carries.
func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// quietCalls drops the gRPC access log of calls that succeeded (logged at
// Info): fault tests make thousands of them. Failed calls (Warn, Error) stay.
type quietCalls struct{ slog.Handler }

func (q quietCalls) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn && r.Message == "finished call" {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietCalls) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietCalls{q.Handler.WithAttrs(attrs)}
}

func (q quietCalls) WithGroup(name string) slog.Handler { return quietCalls{q.Handler.WithGroup(name)} }
