package hatest

import (
	"context"
	"fmt"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/internal/cluster"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
)

const conn = "demo"

// Deadlines: generous, the machine is small and shared, and every process
// runs under the race detector.
const (
	waitLong = 60 * time.Second
	callWait = 30 * time.Second
)

func config(adobe *cluster.Adobe) cluster.ReplicaConfig {
	return cluster.ReplicaConfig{
		Connections: []broker.ConnectionConfig{adobe.Connection(conn)},
		// The tests report several generations bad in a row on purpose: keep
		// the refresh-loop throttle (MinDemandInterval, 30s by default) out
		// of the way.
		Timing: broker.Timing{SessionTTL: 2 * time.Second, MinDemandInterval: time.Millisecond},
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// seed gives the connection its first refresh token through replica i.
func seed(t *testing.T, rs *cluster.Replicas, i int, adobe *cluster.Adobe) {
	t.Helper()
	ctx := ctxFor(t, callWait)
	resp, err := rs.Admin(i).SeedToken(ctx, &pb.SeedTokenRequest{
		Connection: conn, Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: adobe.IssueRefreshToken()},
	})
	if err != nil {
		t.Fatalf("SeedToken on replica %d: %v", i, err)
	}
	t.Logf("seeded through replica %d: generation %d", i, resp.GetConnection().GetGeneration())
}

// waitGen waits until replica i serves generation gen.
func waitGen(t *testing.T, rs *cluster.Replicas, i int, gen uint64) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tok, err := rs.Client(i).GetToken(ctx, conn, 0)
		cancel()
		switch {
		case err == nil && tok.Generation == gen:
			return
		case err == nil && tok.Generation > gen:
			t.Fatalf("replica %d serves generation %d, past the awaited %d", i, tok.Generation, gen)
		case err == nil:
			last = fmt.Sprintf("generation %d", tok.Generation)
		default:
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d does not serve generation %d after %v (last: %s)", i, gen, waitLong, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connection returns what replica i reports of the connection.
func connection(t *testing.T, rs *cluster.Replicas, i int) *pb.Connection {
	t.Helper()
	ctx := ctxFor(t, callWait)
	c, err := rs.Admin(i).GetConnection(ctx, &pb.GetConnectionRequest{Connection: conn})
	if err != nil {
		t.Fatalf("GetConnection on replica %d: %v", i, err)
	}
	return c
}

// invalidate reports generation gen bad through replica i and records the
// answer.
func invalidate(t *testing.T, rs *cluster.Replicas, h *cluster.History, i int, gen uint64) *clients.Token {
	t.Helper()
	ctx := ctxFor(t, waitLong)
	start := time.Now()
	tok, err := rs.Client(i).Invalidate(ctx, conn, gen, "401 from the fault test")
	if err != nil {
		t.Fatalf("Invalidate(%d) on replica %d after %v: %v", gen, i, time.Since(start).Round(time.Millisecond), err)
	}
	h.Add(i, "Invalidate", start, tok)
	if tok.Generation != gen+1 {
		t.Fatalf("Invalidate(%d) on replica %d returned generation %d, want %d", gen, i, tok.Generation, gen+1)
	}
	return tok
}

// noRetry is a client option that turns gRPC retries off, so that every
// failure of the broker shows.
var noRetry = clients.WithDialOptions(grpc.WithDisableRetry())

// load runs GetToken in a loop on every replica, through clients without
// retries, and records every answer.
type load struct {
	h    *cluster.History
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	calls    map[int]int
	fails    map[int]int
	firstErr map[int]string
	excluded map[int]bool
}

func startLoad(t *testing.T, rs *cluster.Replicas, h *cluster.History, workers int) *load {
	l := &load{h: h, stop: make(chan struct{}), calls: map[int]int{}, fails: map[int]int{}, firstErr: map[int]string{}, excluded: map[int]bool{}}
	for i := range rs.N() {
		c := rs.Dial(i, noRetry)
		for range workers {
			l.wg.Add(1)
			go l.run(i, c)
		}
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) run(i int, c *clients.Client) {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		tok, err := c.GetToken(ctx, conn, 0)
		cancel()
		l.mu.Lock()
		if err == nil {
			l.h.Add(i, "GetToken", start, tok)
			l.calls[i]++
		} else if !l.excluded[i] {
			l.calls[i]++
			l.fails[i]++
			if l.firstErr[i] == "" {
				l.firstErr[i] = fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err)
			}
		}
		l.mu.Unlock()
		select {
		case <-l.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exclude stops counting the failures of replica i (a replica that the test
// kills or pauses); its successes are still recorded.
func (l *load) exclude(i int) {
	l.mu.Lock()
	l.excluded[i] = true
	l.mu.Unlock()
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitCalls waits until the load made n more successful calls.
func (l *load) waitCalls(t *testing.T, n int) {
	t.Helper()
	target := l.h.Len() + n
	deadline := time.Now().Add(waitLong)
	for l.h.Len() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load made %d of %d calls in %v", l.h.Len(), target, waitLong)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish stops the load and fails the test on any failed call to a replica
// that was not excluded.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, n := range l.calls {
		t.Logf("load: replica %d: %d GetToken calls counted, %d failed (excluded from the count: %v)", i, n, l.fails[i], l.excluded[i])
		if l.fails[i] > 0 {
			t.Errorf("replica %d: %d of %d GetToken calls failed; first: %s", i, l.fails[i], n, l.firstErr[i])
		}
	}
}

// checkAdobe fails the test unless the fake saw want refreshes and no
// invalid_grant since its last ResetStats.
func checkAdobe(t *testing.T, adobe *cluster.Adobe, want int) {
	t.Helper()
	st := adobe.Stats()
	t.Logf("fake Adobe: token calls %v, token errors %v", st.TokenCalls, st.TokenErrors)
	if n := st.TokenErrors["invalid_grant"]; n != 0 {
		t.Errorf("the fake answered invalid_grant %d times: a refresh token was used twice or lost", n)
	}
	if n := st.TokenCalls["refresh_token"]; n != want {
		t.Errorf("the fake saw %d refresh_token calls, want %d", n, want)
	}
}

// since formats the time from t0.
func since(t0 time.Time) string { return time.Since(t0).Round(time.Millisecond).String() }

// scene is a running cluster whose connection is seeded, with GetToken load
// on every replica: the opening of most fault tests.
type scene struct {
	etcd   *cluster.Etcd
	adobe  *cluster.Adobe
	rs     *cluster.Replicas
	h      *cluster.History
	l      *load
	leader int // the replica that led when the load started
}

// seededUnderLoad starts members etcd members, the fake Adobe and replicas
// replicas, seeds the connection through the leader, waits until every
// replica serves generation 1, and starts GetToken load on all of them.
func seededUnderLoad(t *testing.T, members, replicas int) scene {
	t.Helper()
	s := scene{etcd: cluster.StartEtcd(t, members), h: &cluster.History{}}
	s.adobe = cluster.StartAdobe(t, fakeadobe.Options{})
	s.rs = cluster.StartReplicas(t, s.etcd, replicas, config(s.adobe))
	s.leader = s.rs.MustLeader(waitLong)
	seed(t, s.rs, s.leader, s.adobe)
	for i := range replicas {
		waitGen(t, s.rs, i, 1)
	}
	s.adobe.ResetStats()
	s.l = startLoad(t, s.rs, s.h, 1)
	s.l.waitCalls(t, 100)
	return s
}
