package hatest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/cluster"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// TestCrashBetweenAnswerAndStore: the leader dies right after the identity
// provider rotated the refresh token and before the answer reached etcd (the
// crash failpoint, os.Exit(3), stands for SIGKILL at exactly that point).
// The rotated refresh token died with the process. The next leader waits for
// the claim's deadline, then resolves the interrupted refresh: here the old
// refresh token is refused, so the connection goes to NEEDS_REAUTH with a
// reason that names the interrupted refresh. At most one invalid_grant, never
// two refreshes in flight, and a new seed brings the connection back.
func TestCrashBetweenAnswerAndStore(t *testing.T) {
	etcd := cluster.StartEtcd(t, 1)
	adobe := cluster.StartAdobe(t, fakeadobe.Options{})
	cfg := config(adobe)
	cfg.Timing.ClaimTTL = 3 * time.Second
	cfg.Timing.TokenCallTimeout = 2 * time.Second
	cfg.CrashAfterTokenCall = true
	// The crashing replica starts alone, so it leads.
	rs := cluster.StartReplicas(t, etcd, 1, cfg)
	if got := rs.MustLeader(waitLong); got != 0 {
		t.Fatalf("replica %d leads, want the crashing replica 0", got)
	}
	seed(t, rs, 0, adobe) // a seed is no refresh: the failpoint does not fire
	normal := rs.Add(func(c *cluster.ReplicaConfig) { c.CrashAfterTokenCall = false })
	waitGen(t, rs, normal, 1)
	if got := rs.MustLeader(waitLong); got != 0 {
		t.Fatalf("replica %d leads, want the crashing replica 0", got)
	}
	adobe.ResetStats()

	var h cluster.History
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	t0 := time.Now()
	tok, err := rs.Client(normal).Invalidate(ctx, conn, 1, "401 before the crash")
	t.Logf("Invalidate(1) on replica %d answered after %s: token %v, error %v", normal, since(t0), tok, err)
	select {
	case <-rs.Exited(0):
	case <-time.After(waitLong):
		t.Fatal("the crashing leader did not exit")
	}
	if code := rs.ExitCode(0); code != cluster.CrashExitCode {
		t.Fatalf("the crashing leader exited with code %d, want %d", code, cluster.CrashExitCode)
	}
	if got := rs.MustLeader(waitLong); got != normal {
		t.Fatalf("replica %d leads, want %d", got, normal)
	}

	st := waitResolved(t, rs, normal)
	t.Logf("resolved %s after the Invalidate: state %s, generation %d, last result %q, reason %q",
		since(t0), st.GetState(), st.GetGeneration(), st.GetLastRefreshResult(), st.GetLastErrorReason())
	switch st.GetState() {
	case pb.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH:
		if !errors.Is(err, clients.ErrNeedsReauth) {
			t.Errorf("Invalidate answered %v, want NEEDS_REAUTH", err)
		}
		if r := st.GetLastErrorReason(); !strings.Contains(r, "interrupted") || !strings.Contains(r, rs.ID(0)) {
			t.Errorf("reason %q does not name the interrupted refresh of %s", r, rs.ID(0))
		}
		if n := adobe.InvalidGrants(); n != 1 {
			t.Errorf("%d invalid_grant, want exactly 1 (the recovery's attempt with the rotated-away token)", n)
		}
	case pb.ConnectionState_CONNECTION_STATE_OK:
		if st.GetGeneration() != 2 {
			t.Errorf("generation %d, want 2", st.GetGeneration())
		}
		if err != nil {
			t.Errorf("Invalidate: %v", err)
		}
		if n := adobe.InvalidGrants(); n != 0 {
			t.Errorf("%d invalid_grant", n)
		}
	default:
		t.Fatalf("state %s after the recovery", st.GetState())
	}
	// One refresh by the crashed leader, one by the recovery; none after.
	if n := adobe.Refreshes(); n != 2 {
		t.Errorf("%d refresh_token calls, want 2 (the crashed one and the recovery)", n)
	}

	// The broker does not call the token endpoint again by itself, and a
	// new login (seed) brings the connection back.
	if st.GetState() == pb.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH {
		if _, err := rs.Client(normal).Invalidate(ctxFor(t, callWait), conn, st.GetGeneration(), "401 again"); !errors.Is(err, clients.ErrNeedsReauth) {
			t.Errorf("Invalidate in NEEDS_REAUTH: %v, want NEEDS_REAUTH", err)
		}
	}
	if n := adobe.Refreshes(); n != 2 {
		t.Errorf("%d refresh_token calls after NEEDS_REAUTH, want still 2", n)
	}
	seed(t, rs, normal, adobe)
	gen := connection(t, rs, normal).GetGeneration()
	waitGen(t, rs, normal, gen)
	adobe.ResetStats()
	invalidate(t, rs, &h, normal, gen)
	checkAdobe(t, adobe, 1)
	h.Check(t)
}

// waitResolved waits until the record carries no claim and is OK or
// NEEDS_REAUTH, as replica i sees it.
func waitResolved(t *testing.T, rs *cluster.Replicas, i int) *pb.Connection {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		st := connection(t, rs, i)
		switch st.GetState() {
		case pb.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH:
			return st
		case pb.ConnectionState_CONNECTION_STATE_OK:
			if st.GetGeneration() > 1 {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not resolved after %v: %v", waitLong, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
