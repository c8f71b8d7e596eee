package hatest

import (
	"testing"
	"time"

	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// TestLeaderKilled: the leader is killed with SIGKILL while callers loop
// GetToken on every replica. The survivors serve every call; another replica
// leads and serves RefreshNow; no refresh token is lost.
func TestLeaderKilled(t *testing.T) {
	s := seededUnderLoad(t, 1, 3)
	adobe, rs, h, l, leader := s.adobe, s.rs, s.h, s.l, s.leader

	l.exclude(leader)
	t0 := time.Now()
	rs.Kill(leader)
	t.Logf("killed the leader, replica %d", leader)
	next := rs.MustLeader(waitLong)
	if next == leader {
		t.Fatalf("replica %d still leads after SIGKILL", leader)
	}
	t.Logf("replica %d leads %s after the kill", next, since(t0))
	l.waitCalls(t, 100)

	// RefreshNow through the survivor that does not lead: the request goes
	// through etcd to the new leader, which refreshes.
	other := 3 - leader - next
	ctx := ctxFor(t, waitLong)
	resp, err := rs.Admin(other).RefreshNow(ctx, &pb.RefreshNowRequest{Connection: conn})
	if err != nil {
		t.Fatalf("RefreshNow on replica %d: %v", other, err)
	}
	if g := resp.GetConnection().GetGeneration(); g != 2 {
		t.Fatalf("RefreshNow: generation %d, want 2", g)
	}
	// One of the survivors made the refresh (refresh_count is per process;
	// the leader may have changed again on a loaded machine, so both count).
	if n := connection(t, rs, next).GetRefreshCount() + connection(t, rs, other).GetRefreshCount(); n != 1 {
		t.Errorf("the survivors made %d refreshes, want 1", n)
	}
	waitGen(t, rs, next, 2)
	waitGen(t, rs, other, 2)
	l.waitCalls(t, 100)

	// The killed replica comes back with the newest token, and the three
	// agree on one leader.
	rs.Restart(leader)
	waitGen(t, rs, leader, 2)
	t.Logf("after the restart of replica %d, replica %d leads", leader, rs.MustLeader(waitLong))
	l.finish(t)
	checkAdobe(t, adobe, 1)
	h.Check(t)
}

// TestLeaderTerminated: the leader gets SIGTERM while callers loop GetToken.
// It resigns, so another replica leads without waiting for the session TTL;
// the survivors serve every call; the stopped process exits 0; the next
// refresh is served by the new leader with no invalid_grant.
func TestLeaderTerminated(t *testing.T) {
	s := seededUnderLoad(t, 1, 3)
	adobe, rs, h, l, leader := s.adobe, s.rs, s.h, s.l, s.leader

	l.exclude(leader)
	t0 := time.Now()
	rs.Term(leader) // fails the test unless it exits 0
	t.Logf("replica %d, the leader, exited %s after SIGTERM", leader, since(t0))
	next := rs.MustLeader(waitLong)
	t.Logf("replica %d leads %s after SIGTERM", next, since(t0))
	invalidate(t, rs, h, next, 1)
	other := 3 - leader - next
	waitGen(t, rs, other, 2)
	l.waitCalls(t, 100)
	rs.Restart(leader)
	waitGen(t, rs, leader, 2)
	l.finish(t)
	checkAdobe(t, adobe, 1)
	h.Check(t)
}
