package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/embedetcd"
	"github.com/tokenbroker/tokenbroker/server"
)

// TestGracefulShutdownHandsOver: the leader is shut down while 20 Invalidate
// calls wait on it. Leadership moves to the other replica, the refresh is
// done once, and no call in flight fails.
func TestGracefulShutdownHandsOver(t *testing.T) {
	ctx := context.Background()
	etcd, err := embedetcd.Start(ctx, embedetcd.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close) // runs after the replicas' cleanups
	fake := fakeadobe.New(fakeadobe.Options{Latency: 200 * time.Millisecond})
	fsrv := httptest.NewServer(fake)
	defer fsrv.Close()
	cfg := broker.Config{Connections: []broker.ConnectionConfig{{
		Name: "demo", IMSURL: fsrv.URL, APIBaseURL: fsrv.URL, ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(),
	}}}
	keys := seal.Generate("k1")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	type replica struct {
		b      *broker.Broker
		addr   string
		cancel context.CancelFunc
		done   chan error
	}
	start := func(id string) *replica {
		cli, err := etcd.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		rctx, cancel := context.WithCancel(ctx)
		r := &replica{cancel: cancel, done: make(chan error, 1)}
		ready := make(chan struct{})
		go func() {
			r.done <- runReplica(rctx, replicaOptions{
				Config: cfg, Client: cli, Prefix: "/tb/", Keyring: keys, ReplicaID: id, Listen: "127.0.0.1:0",
				Policy: server.Policy{Disabled: true}, Logger: log, ShutdownGrace: 30 * time.Second,
				OnReady: func(b *broker.Broker, addr, _ string) { r.b, r.addr = b, addr; close(ready) },
			})
		}()
		t.Cleanup(func() { cancel(); <-r.done })
		select {
		case <-ready:
		case err := <-r.done:
			t.Fatalf("replica %s: %v", id, err)
		}
		return r
	}
	r1 := start("r1")
	waitFor(t, "r1 leads", r1.b.Leading)
	r2 := start("r2")
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := r1.b.Seed(sctx, "demo", broker.Seed{RefreshToken: fake.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "r2 sees generation 1", func() bool { st, _ := r2.b.Status("demo"); return st.Generation == 1 })

	c, err := clients.Dial(r1.addr, clients.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const callers = 20
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	gens := make(chan uint64, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Invalidate(sctx, "demo", 1, "401 during shutdown")
			if err != nil {
				errs <- err
				return
			}
			gens <- tok.Generation
		}()
	}
	// All calls are in flight on r1 before it is told to stop.
	waitFor(t, "calls in flight", func() bool { st, _ := r1.b.Status("demo"); return st.Invalidations >= callers })
	r1.cancel()
	waitFor(t, "r2 leads", r2.b.Leading)
	wg.Wait()
	close(errs)
	close(gens)
	for err := range errs {
		t.Errorf("call in flight failed: %v", err)
	}
	for g := range gens {
		if g != 2 {
			t.Errorf("call got generation %d, want 2", g)
		}
	}
	t.Logf("calls done")
	if err := <-r1.done; err != nil {
		t.Fatalf("r1 stopped with %v", err)
	}
	r1.done <- nil
	t.Logf("r1 stopped")
	if n := fake.Stats().TokenCalls["refresh_token"]; n != 2 {
		t.Fatalf("%d refresh calls, want 2 (seed and one refresh)", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
