package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/clients"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ReplicaConfig configures the broker replicas of StartReplicas.
type ReplicaConfig struct {
	// Connections the replicas serve (required).
	Connections []broker.ConnectionConfig
	// Timing is the refresh policy; a zero SessionTTL becomes 2s.
	Timing broker.Timing
	// Prefix is the etcd key prefix (default: a fresh one per StartReplicas).
	Prefix string
	// Endpoints are the etcd endpoints the replicas use (default: every
	// member of the cluster).
	Endpoints []string
	// CrashAfterTokenCall arms the crash failpoint (EnvCrashAfterTokenCall).
	CrashAfterTokenCall bool
	// Env is extra environment of the processes ("KEY=value").
	Env []string
	// LogLevel of the replicas' logs (default Info).
	LogLevel slog.Level
}

// Replicas are broker replica processes sharing one etcd prefix and keyring.
type Replicas struct {
	t      testing.TB
	etcd   *Etcd
	base   ReplicaConfig
	dir    string
	keyID  string
	key    []byte
	keys   *seal.Keyring
	mu     sync.Mutex
	reps   []*replica
	closed atomic.Bool
}

type replica struct {
	id     string
	addr   string
	proc   *proc
	health *grpc.ClientConn
	admin  pb.AdminClient
	client *clients.Client
}

var prefixes atomic.Int64

// connectParams reconnect fast to a restarted process (gRPC's default
// backoff grows to two minutes).
var connectParams = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
	MinConnectTimeout: 2 * time.Second,
})

// StartReplicas starts n broker replicas against etcd, one after the other,
// each waited for until its health service reports SERVING (its cache is
// synced). Replica i has the id "replica-i". They are killed when the test
// ends; their logs are dumped if it failed.
func StartReplicas(t testing.TB, etcd *Etcd, n int, cfg ReplicaConfig) *Replicas {
	t.Helper()
	if cfg.Timing.SessionTTL == 0 {
		cfg.Timing.SessionTTL = 2 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("/harness-%d/", prefixes.Add(1))
	}
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = etcd.Endpoints()
	}
	if err := (broker.Config{Connections: cfg.Connections, Timing: cfg.Timing}).Validate(); err != nil {
		t.Fatalf("cluster: replica config: %v", err)
	}
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keys, err := seal.New("harness", map[string][]byte{"harness": key})
	if err != nil {
		t.Fatal(err)
	}
	r := &Replicas{t: t, etcd: etcd, base: cfg, dir: t.TempDir(), keyID: "harness", key: key, keys: keys}
	t.Cleanup(r.cleanup)
	for range n {
		r.Add(nil)
	}
	return r
}

// Keyring is the keyring every replica shares (to read records directly).
func (r *Replicas) Keyring() *seal.Keyring { return r.keys }

// Prefix is the etcd key prefix of the replicas.
func (r *Replicas) Prefix() string { return r.base.Prefix }

// Add starts one more replica, with the base configuration changed by mod
// (if not nil), and waits until it serves. It returns its index. Prefix,
// keyring and etcd stay shared.
func (r *Replicas) Add(mod func(*ReplicaConfig)) int {
	r.t.Helper()
	cfg := r.base
	cfg.Env = append([]string(nil), cfg.Env...)
	if mod != nil {
		mod(&cfg)
		cfg.Prefix = r.base.Prefix
	}
	addr, err := freePort()
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	i := len(r.reps)
	r.mu.Unlock()
	id := fmt.Sprintf("replica-%d", i)
	spec := replicaSpec{
		ID: id, Listen: addr, Endpoints: cfg.Endpoints, Prefix: cfg.Prefix,
		KeyID: r.keyID, Key: encodeKey(r.key), Conns: cfg.Connections, Timing: cfg.Timing, LogLevel: cfg.LogLevel,
	}
	env := cfg.Env
	if cfg.CrashAfterTokenCall {
		env = append(env, EnvCrashAfterTokenCall+"=1")
	}
	health, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), connectParams)
	if err != nil {
		r.t.Fatal(err)
	}
	client, err := clients.Dial(addr, clients.WithInsecure(), clients.WithDialOptions(connectParams))
	if err != nil {
		r.t.Fatal(err)
	}
	rep := &replica{id: id, addr: addr, proc: newProc(r.t, r.dir, id, RoleReplica, spec, env), health: health, admin: pb.NewAdminClient(health), client: client}
	r.mu.Lock()
	r.reps = append(r.reps, rep)
	r.mu.Unlock()
	if err := rep.proc.start(); err != nil {
		r.t.Fatal(err)
	}
	r.mustServe(i)
	return i
}

func (r *Replicas) cleanup() {
	r.closed.Store(true)
	r.mu.Lock()
	reps := append([]*replica(nil), r.reps...)
	r.mu.Unlock()
	for _, rep := range reps {
		rep.client.Close()
		rep.health.Close()
		rep.proc.cleanup()
	}
	for _, rep := range reps {
		if r.t.Failed() {
			rep.proc.dump(r.t)
		}
		rep.proc.checkLog(r.t)
	}
}

func (r *Replicas) rep(i int) *replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 || i >= len(r.reps) {
		r.t.Fatalf("cluster: no replica %d", i)
	}
	return r.reps[i]
}

// N is the number of replicas started (live or not).
func (r *Replicas) N() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reps)
}

// ID is the replica id of replica i.
func (r *Replicas) ID(i int) string { return r.rep(i).id }

// Index is the index of the replica with id, or -1.
func (r *Replicas) Index(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rep := range r.reps {
		if rep.id == id {
			return i
		}
	}
	return -1
}

// Addr is the gRPC address of replica i (it keeps it across restarts).
func (r *Replicas) Addr(i int) string { return r.rep(i).addr }

// Client is a client of replica i with the default options of package
// clients (plaintext), reused across restarts and closed when the test ends.
func (r *Replicas) Client(i int) *clients.Client { return r.rep(i).client }

// Admin is the Admin service of replica i.
func (r *Replicas) Admin(i int) pb.AdminClient { return r.rep(i).admin }

// Dial returns a new client of replica i with more options (for example
// clients.WithDialOptions(grpc.WithDisableRetry())), closed when the test ends.
func (r *Replicas) Dial(i int, opts ...clients.Option) *clients.Client {
	r.t.Helper()
	opts = append([]clients.Option{clients.WithInsecure(), clients.WithDialOptions(connectParams)}, opts...)
	c, err := clients.Dial(r.Addr(i), opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// Live reports whether replica i runs and is not paused.
func (r *Replicas) Live(i int) bool { return r.rep(i).proc.live() }

// Exited is closed when the current run of replica i ends.
func (r *Replicas) Exited(i int) <-chan struct{} { return r.rep(i).proc.exited() }

// ExitCode is the exit code of replica i's last run (-1: killed by a signal,
// or still running).
func (r *Replicas) ExitCode(i int) int { return r.rep(i).proc.exitCode() }

// Kill kills replica i with SIGKILL and waits until it is gone.
func (r *Replicas) Kill(i int) {
	r.t.Helper()
	if err := r.rep(i).proc.kill(); err != nil {
		r.t.Fatalf("cluster: kill replica %d: %v", i, err)
	}
}

// Term stops replica i with SIGTERM and waits for its graceful exit.
func (r *Replicas) Term(i int) {
	r.t.Helper()
	p := r.rep(i).proc
	if err := p.term(); err != nil {
		r.t.Fatalf("cluster: terminate replica %d: %v", i, err)
	}
	if code := p.exitCode(); code != 0 {
		r.t.Errorf("cluster: replica %d exited with code %d after SIGTERM", i, code)
	}
}

// Pause stops replica i with SIGSTOP.
func (r *Replicas) Pause(i int) {
	r.t.Helper()
	if err := r.rep(i).proc.signal(syscall.SIGSTOP); err != nil {
		r.t.Fatal(err)
	}
}

// Resume continues replica i with SIGCONT.
func (r *Replicas) Resume(i int) {
	r.t.Helper()
	if err := r.rep(i).proc.signal(syscall.SIGCONT); err != nil {
		r.t.Fatal(err)
	}
}

// Restart starts replica i again after it ended (same id, address and
// configuration) and waits until it serves.
func (r *Replicas) Restart(i int) {
	r.t.Helper()
	if err := r.rep(i).proc.start(); err != nil {
		r.t.Fatalf("cluster: restart replica %d: %v", i, err)
	}
	r.mustServe(i)
}

func (r *Replicas) mustServe(i int) {
	r.t.Helper()
	if err := r.WaitServing(i, StartTimeout); err != nil {
		r.t.Fatalf("cluster: replica %d does not serve: %v", i, err)
	}
}

// WaitServing waits until replica i's health service reports SERVING.
func (r *Replicas) WaitServing(i int, timeout time.Duration) error {
	rep := r.rep(i)
	return poll(timeout, rep.proc.exited(), func() error {
		st, err := r.healthOf(rep, "")
		if err != nil {
			return err
		}
		if st != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health %s", st)
		}
		return nil
	})
}

func (r *Replicas) healthOf(rep *replica, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(rep.health).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return 0, err
	}
	return resp.GetStatus(), nil
}

// Leading reports whether replica i leads, as it sees itself.
func (r *Replicas) Leading(i int) (bool, error) {
	rep := r.rep(i)
	if !rep.proc.live() {
		return false, fmt.Errorf("replica %d: %w", i, errNotRunning)
	}
	st, err := r.healthOf(rep, LeadingService)
	if err != nil {
		return false, err
	}
	return st == healthpb.HealthCheckResponse_SERVING, nil
}

// LeaderNow returns the index of the leader if every live replica agrees on
// it now: each names it in Admin.ListReplicas, it is live, it sees itself
// leading, and no other live replica does.
func (r *Replicas) LeaderNow() (int, error) {
	var leaderID string
	var leading []int
	live := 0
	for i := range r.N() {
		rep := r.rep(i)
		if !rep.proc.live() {
			continue
		}
		live++
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := rep.admin.ListReplicas(ctx, &pb.ListReplicasRequest{})
		cancel()
		if err != nil {
			return -1, fmt.Errorf("replica %d: ListReplicas: %w", i, err)
		}
		switch {
		case resp.GetLeader() == "":
			return -1, fmt.Errorf("replica %d knows no leader", i)
		case leaderID != "" && resp.GetLeader() != leaderID:
			return -1, fmt.Errorf("replicas disagree on the leader: %s and %s", leaderID, resp.GetLeader())
		}
		leaderID = resp.GetLeader()
		l, err := r.Leading(i)
		if err != nil {
			return -1, fmt.Errorf("replica %d: %w", i, err)
		}
		if l {
			leading = append(leading, i)
		}
	}
	if live == 0 {
		return -1, errors.New("no live replica")
	}
	idx := r.Index(leaderID)
	if idx < 0 || !r.Live(idx) {
		return -1, fmt.Errorf("the agreed leader %s is not a live replica", leaderID)
	}
	if len(leading) != 1 || leading[0] != idx {
		return -1, fmt.Errorf("replicas that see themselves leading: %v; agreed leader %d", leading, idx)
	}
	return idx, nil
}

// Leader waits until the live replicas agree on a leader (see LeaderNow) and
// returns its index.
func (r *Replicas) Leader(ctx context.Context) (int, error) {
	var last error
	for {
		i, err := r.LeaderNow()
		if err == nil {
			return i, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no agreed leader: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// MustLeader is Leader with a deadline of timeout that fails the test.
func (r *Replicas) MustLeader(timeout time.Duration) int {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	i, err := r.Leader(ctx)
	if err != nil {
		r.t.Fatalf("cluster: %v", err)
	}
	return i
}
