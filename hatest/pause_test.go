package hatest

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/cluster"
)

// TestLeaderPaused: the leader is frozen with SIGSTOP for longer than the
// session TTL. Another replica leads and refreshes twice meanwhile. After
// SIGCONT the old leader cannot overwrite the newer state: generations only
// grow on every replica, the fake sees no invalid_grant, and the old leader
// steps down (exactly one replica leads, and all agree which).
func TestLeaderPaused(t *testing.T) {
	s := seededUnderLoad(t, 1, 3)
	etcd, adobe, rs, h, l, old := s.etcd, s.adobe, s.rs, s.h, s.l, s.leader

	l.exclude(old)
	t0 := time.Now()
	rs.Pause(old)
	t.Logf("paused the leader, replica %d", old)
	next := rs.MustLeader(waitLong) // among the live replicas
	if next == old {
		t.Fatal("the paused replica still counts as leader")
	}
	t.Logf("replica %d leads %s after the pause", next, since(t0))
	other := 3 - old - next
	invalidate(t, rs, h, other, 1)
	waitGen(t, rs, next, 2) // a replica refuses to hear of a generation it has not seen yet
	invalidate(t, rs, h, next, 2)
	waitGen(t, rs, other, 3)
	l.waitCalls(t, 100)
	paused := time.Since(t0)
	rs.Resume(old)
	t.Logf("resumed replica %d after %s", old, paused.Round(time.Millisecond))

	// The old leader steps down: its session expired while it was frozen.
	waitNotLeading(t, rs, old)
	t.Logf("replica %d stepped down %s after the resume", old, since(t0.Add(paused)))
	// It catches up, everybody agrees on the leader and exactly one replica
	// sees itself leading.
	waitGen(t, rs, old, 3)
	got := rs.MustLeader(waitLong)
	t.Logf("one leader, replica %d, agreed by all three, %s after the resume", got, since(t0.Add(paused)))
	// Reports through the old leader go to the new one.
	invalidate(t, rs, h, old, 3)
	for i := range 3 {
		waitGen(t, rs, i, 4)
	}
	l.waitCalls(t, 100)
	l.finish(t)
	checkAdobe(t, adobe, 3)
	h.Check(t)
	checkRecord(t, etcd, rs, 4)
}

// checkRecord reads the record straight from etcd: generation gen, OK, no
// claim left behind.
func checkRecord(t *testing.T, etcd *cluster.Etcd, rs *cluster.Replicas, gen uint64) {
	t.Helper()
	store := broker.NewEtcdStore(etcd.Client(), rs.Prefix(), rs.Keyring())
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	v, err := store.Load(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	rec := v.Record
	if rec.Generation != gen || rec.State != broker.StateOK || rec.Claim != nil || v.Unreadable != "" {
		t.Errorf("record in etcd: generation %d state %s claim %+v unreadable %q; want generation %d, OK, no claim",
			rec.Generation, rec.State, rec.Claim, v.Unreadable, gen)
	}
}

// waitNotLeading waits until replica i does not see itself leading.
func waitNotLeading(t *testing.T, rs *cluster.Replicas, i int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		l, err := rs.Leading(i)
		if err == nil && !l {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d still leads (or does not answer: %v) after %v", i, err, waitLong)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaderPausedMidRefresh: the leader is frozen with SIGSTOP while its
// call to the identity provider is in flight, past the session TTL. The IdP
// rotates the refresh token and answers into the frozen process's socket.
// Another replica leads but does not refresh: the claim's deadline has not
// passed, and the interrupted call may still land. After SIGCONT the deposed
// leader stores the rotated token (the write compares the record's
// generation, not the leadership: it holds the only valid refresh token), so
// nothing is lost and the fake sees no invalid_grant.
func TestLeaderPausedMidRefresh(t *testing.T) {
	etcd := cluster.StartEtcd(t, 1)
	adobe := cluster.StartAdobe(t, fakeadobe.Options{})
	cfg := config(adobe)
	cfg.Timing.TokenCallTimeout = 20 * time.Second // longer than the pause
	cfg.Timing.ClaimTTL = 25 * time.Second
	rs := cluster.StartReplicas(t, etcd, 2, cfg)
	old := rs.MustLeader(waitLong)
	other := 1 - old
	seed(t, rs, old, adobe)
	waitGen(t, rs, other, 1)
	adobe.ResetStats()
	adobe.SetLatency(1500 * time.Millisecond)

	var h cluster.History
	type result struct {
		tok   *clients.Token
		err   error
		start time.Time
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		start := time.Now()
		tok, err := rs.Client(other).Invalidate(ctx, conn, 1, "401 before the pause")
		done <- result{tok, err, start}
	}()
	// Freeze the leader as soon as its refresh reached the IdP, which holds
	// the answer back for 1.5s.
	deadline := time.Now().Add(waitLong)
	for adobe.Refreshes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not call the IdP")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t0 := time.Now()
	rs.Pause(old)
	t.Logf("paused the leader, replica %d, with its refresh in flight", old)
	if got := rs.MustLeader(waitLong); got != other {
		t.Fatalf("replica %d leads, want %d", got, other)
	}
	t.Logf("replica %d leads %s after the pause; the claim keeps it from refreshing", other, since(t0))
	if n := adobe.Refreshes(); n != 1 {
		t.Fatalf("%d refresh calls while the first is unresolved, want 1", n)
	}
	// The fault is a duration: stay frozen until the IdP has surely answered.
	for time.Since(t0) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	rs.Resume(old)
	t.Logf("resumed replica %d after %s", old, since(t0))
	r := <-done
	if r.err != nil {
		t.Fatalf("Invalidate(1): %v", r.err)
	}
	h.Add(other, "Invalidate", r.start, r.tok)
	if r.tok.Generation != 2 {
		t.Fatalf("Invalidate(1) returned generation %d, want 2", r.tok.Generation)
	}
	waitGen(t, rs, old, 2)
	if n := connection(t, rs, old).GetRefreshCount(); n != 1 {
		t.Errorf("the deposed leader made %d refreshes, want 1 (the one it stored after the resume)", n)
	}
	checkAdobe(t, adobe, 1)

	// The chain goes on from the stored refresh token.
	adobe.SetLatency(0)
	adobe.ResetStats()
	invalidate(t, rs, &h, old, 2)
	waitGen(t, rs, other, 3)
	checkAdobe(t, adobe, 1)
	h.Check(t)
	checkRecord(t, etcd, rs, 3)
}
