package hatest

import (
	"testing"
	"time"
)

// TestEtcdMemberKilled: the etcd member that leads the raft group is killed
// with SIGKILL, then restarted. With one of three members down everything
// works (GetToken without a single failure, Invalidate yields the next
// generation), and still after it rejoined.
func TestEtcdMemberKilled(t *testing.T) {
	s := seededUnderLoad(t, 3, 2)
	etcd, adobe, rs, h, l := s.etcd, s.adobe, s.rs, s.h, s.l

	m, err := etcd.Leader()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	etcd.Kill(m)
	etcd.MustWaitHealthy()
	t.Logf("killed etcd member %d, the raft leader; the other two agree on a new leader %s later", m, since(t0))
	rs.MustLeader(waitLong)
	invalidate(t, rs, h, 0, 1)
	waitGen(t, rs, 1, 2)
	l.waitCalls(t, 100)

	t1 := time.Now()
	etcd.Restart(m)
	etcd.MustWaitHealthy()
	t.Logf("etcd member %d rejoined %s after its restart", m, since(t1))
	invalidate(t, rs, h, 1, 2)
	waitGen(t, rs, 0, 3)
	l.waitCalls(t, 100)
	l.finish(t)
	checkAdobe(t, adobe, 2)
	h.Check(t)
	checkRecord(t, etcd, rs, 3)
}
