package hatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
)

// TestQuorumLoss: two of three etcd members are killed. The replicas keep
// serving the cached, still valid token; Invalidate answers UNAVAILABLE
// within its deadline (no refresh without etcd: the answer could not be
// stored). The members come back and everything recovers by itself: the
// same Invalidate then yields the next generation, and no refresh token was
// lost.
func TestQuorumLoss(t *testing.T) {
	s := seededUnderLoad(t, 3, 2)
	etcd, adobe, rs, h, l := s.etcd, s.adobe, s.rs, s.h, s.l

	lead, err := etcd.Leader()
	if err != nil {
		t.Fatal(err)
	}
	killed := []int{lead, (lead + 1) % 3}
	t0 := time.Now()
	for _, m := range killed {
		etcd.Kill(m)
	}
	t.Logf("killed etcd members %v (%d led); member %d is alone", killed, lead, 3-killed[0]-killed[1])

	// The replicas notice: their sessions end, nobody leads.
	waitNotLeading(t, rs, 0)
	waitNotLeading(t, rs, 1)
	t.Logf("no replica leads %s after the quorum loss", since(t0))
	l.waitCalls(t, 100)

	// Invalidate cannot be served without etcd: it answers UNAVAILABLE, and
	// before the caller's deadline.
	const deadlineInvalidate = 20 * time.Second
	c := rs.Dial(0, noRetry)
	ctx, cancel := context.WithTimeout(context.Background(), deadlineInvalidate)
	start := time.Now()
	tok, err := c.Invalidate(ctx, conn, 1, "401 during the outage")
	cancel()
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatalf("Invalidate without quorum returned %v", tok)
	case !errors.Is(err, clients.ErrUnavailable):
		t.Fatalf("Invalidate without quorum after %v: %v, want UNAVAILABLE", took.Round(time.Millisecond), err)
	}
	t.Logf("Invalidate without quorum: UNAVAILABLE, reason %s, after %v (deadline %v): %v", clients.Reason(err), took.Round(time.Millisecond), deadlineInvalidate, err)
	l.waitCalls(t, 100)

	t1 := time.Now()
	for _, m := range killed {
		etcd.Restart(m)
	}
	etcd.MustWaitHealthy()
	t.Logf("etcd has a quorum again %s after the restarts", since(t1))
	next := rs.MustLeader(waitLong)
	t.Logf("replica %d leads %s after the restarts", next, since(t1))
	invalidate(t, rs, h, 0, 1)
	waitGen(t, rs, 1, 2)
	invalidate(t, rs, h, 1, 2)
	waitGen(t, rs, 0, 3)
	l.waitCalls(t, 50)
	l.finish(t)
	checkAdobe(t, adobe, 2)
	h.Check(t)
}
