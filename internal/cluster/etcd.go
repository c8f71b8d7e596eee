package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is an etcd cluster of member processes on loopback.
type Etcd struct {
	t         testing.TB
	members   []*proc
	endpoints []string
}

// StartEtcd starts an n-member etcd cluster, each member a process, and
// waits until every member serves and the cluster has a leader. The members
// are killed when the test ends; their logs are dumped if it failed.
func StartEtcd(t testing.TB, n int) *Etcd {
	t.Helper()
	if n < 1 {
		t.Fatalf("cluster: %d etcd members", n)
	}
	dir := t.TempDir()
	addrs, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	e := &Etcd{t: t}
	var initial []string
	specs := make([]etcdSpec, n)
	for i := range n {
		specs[i] = etcdSpec{
			Name:      fmt.Sprintf("etcd-%d", i),
			Dir:       filepath.Join(dir, fmt.Sprintf("etcd-%d.data", i)),
			ClientURL: "http://" + addrs[2*i],
			PeerURL:   "http://" + addrs[2*i+1],
		}
		initial = append(initial, specs[i].Name+"="+specs[i].PeerURL)
		e.endpoints = append(e.endpoints, specs[i].ClientURL)
	}
	for i := range n {
		specs[i].InitialCluster = strings.Join(initial, ",")
		e.members = append(e.members, newProc(t, dir, specs[i].Name, RoleEtcd, specs[i], nil))
	}
	t.Cleanup(func() {
		for _, m := range e.members {
			m.cleanup()
		}
		for _, m := range e.members {
			if t.Failed() {
				m.dump(t)
			}
			m.checkLog(t)
		}
	})
	// Start every member before waiting: a member of a multi-member cluster
	// serves only once a quorum has formed.
	for _, m := range e.members {
		if err := m.start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WaitHealthy(StartTimeout); err != nil {
		t.Fatalf("cluster: etcd did not start: %v", err)
	}
	return e
}

// Endpoints are the client URLs of every member.
func (e *Etcd) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Endpoint is the client URL of member i.
func (e *Etcd) Endpoint(i int) string { return e.endpoints[i] }

// N is the number of members.
func (e *Etcd) N() int { return len(e.members) }

// Kill kills member i with SIGKILL and waits until it is gone.
func (e *Etcd) Kill(i int) {
	e.t.Helper()
	if err := e.members[i].kill(); err != nil {
		e.t.Fatalf("cluster: kill etcd %d: %v", i, err)
	}
}

// Restart starts member i again (same name, data and ports) and waits until
// it answers a status request. It does not wait for a quorum: see
// WaitHealthy.
func (e *Etcd) Restart(i int) {
	e.t.Helper()
	m := e.members[i]
	if err := m.start(); err != nil {
		e.t.Fatalf("cluster: restart etcd %d: %v", i, err)
	}
	err := poll(StartTimeout, m.exited(), func() error {
		_, err := e.status(i, 2*time.Second)
		return err
	})
	if err != nil {
		e.t.Fatalf("cluster: etcd %d did not come back: %v", i, err)
	}
}

// Stop pauses member i with SIGSTOP.
func (e *Etcd) Stop(i int) {
	e.t.Helper()
	if err := e.members[i].signal(syscall.SIGSTOP); err != nil {
		e.t.Fatal(err)
	}
}

// Cont resumes member i with SIGCONT.
func (e *Etcd) Cont(i int) {
	e.t.Helper()
	if err := e.members[i].signal(syscall.SIGCONT); err != nil {
		e.t.Fatal(err)
	}
}

// Live reports whether member i runs and is not stopped.
func (e *Etcd) Live(i int) bool { return e.members[i].live() }

// Client returns a client of the live members, closed when the test ends.
func (e *Etcd) Client() *clientv3.Client {
	e.t.Helper()
	var eps []string
	for i, m := range e.members {
		if m.live() {
			eps = append(eps, e.endpoints[i])
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// status asks member i alone for its status.
func (e *Etcd) status(i int, timeout time.Duration) (*clientv3.StatusResponse, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.endpoints[i]}, DialTimeout: timeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return cli.Status(ctx, e.endpoints[i])
}

// Leader returns the index of the member that leads the raft group, as every
// live member agrees, or an error.
func (e *Etcd) Leader() (int, error) {
	var leader uint64
	ids := map[uint64]int{}
	for i, m := range e.members {
		if !m.live() {
			continue
		}
		st, err := e.status(i, 2*time.Second)
		if err != nil {
			return -1, fmt.Errorf("etcd %d: %w", i, err)
		}
		ids[st.Header.MemberId] = i
		if st.Leader == 0 {
			return -1, fmt.Errorf("etcd %d has no leader", i)
		}
		if leader != 0 && st.Leader != leader {
			return -1, fmt.Errorf("etcd members disagree on the leader: %x and %x", leader, st.Leader)
		}
		leader = st.Leader
	}
	i, ok := ids[leader]
	if !ok {
		return -1, fmt.Errorf("etcd leader %x is not a live member", leader)
	}
	return i, nil
}

// WaitHealthy waits until every live member agrees on a leader and a
// linearizable read succeeds through each of them.
func (e *Etcd) WaitHealthy(timeout time.Duration) error {
	return poll(timeout, nil, func() error {
		for i, m := range e.members {
			if !m.running() {
				continue
			}
			select {
			case <-m.exited():
				return fmt.Errorf("etcd %d exited with code %d", i, m.exitCode())
			default:
			}
		}
		if _, err := e.Leader(); err != nil {
			return err
		}
		for i, m := range e.members {
			if !m.live() {
				continue
			}
			if err := e.read(i); err != nil {
				return fmt.Errorf("etcd %d: %w", i, err)
			}
		}
		return nil
	})
}

func (e *Etcd) read(i int) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.endpoints[i]}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "/harness/health")
	return err
}

// MustWaitHealthy is WaitHealthy that fails the test.
func (e *Etcd) MustWaitHealthy() {
	e.t.Helper()
	if err := e.WaitHealthy(StartTimeout); err != nil {
		e.t.Fatalf("cluster: etcd not healthy: %v", err)
	}
}
