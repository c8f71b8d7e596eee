package hatest

import (
	"testing"
	"time"
)

// TestEtcdMemberFrozen: the etcd member that leads the raft group is frozen
// with SIGSTOP (alive to TCP, silent to everything: the hardest kind of
// member failure for clients attached to it), then continued.
func TestEtcdMemberFrozen(t *testing.T) {
	s := seededUnderLoad(t, 3, 2)
	etcd, adobe, rs, h, l := s.etcd, s.adobe, s.rs, s.h, s.l

	m, err := etcd.Leader()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	etcd.Stop(m)
	etcd.MustWaitHealthy()
	t.Logf("froze etcd member %d, the raft leader; the other two agree on a new leader %s later", m, since(t0))
	rs.MustLeader(waitLong)
	t.Logf("replicas agree on a leader %s after the freeze", since(t0))
	t1 := time.Now()
	invalidate(t, rs, h, 0, 1)
	t.Logf("Invalidate(1) on replica 0 took %s", since(t1))
	waitGen(t, rs, 1, 2)
	t1 = time.Now()
	invalidate(t, rs, h, 1, 2)
	t.Logf("Invalidate(2) on replica 1 took %s", since(t1))
	waitGen(t, rs, 0, 3)
	l.waitCalls(t, 100)

	etcd.Cont(m)
	etcd.MustWaitHealthy()
	t.Logf("etcd member %d continued after %s", m, since(t0))
	invalidate(t, rs, h, 0, 3)
	waitGen(t, rs, 1, 4)
	l.waitCalls(t, 100)
	l.finish(t)
	checkAdobe(t, adobe, 3)
	h.Check(t)
	checkRecord(t, etcd, rs, 4)
}
