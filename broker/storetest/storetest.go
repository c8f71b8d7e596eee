// Package storetest is the conformance suite that every broker.Store must
// pass. The etcd store runs it against a real embedded etcd.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
)

// Harness is a store under test and the means to make fences in its backend.
type Harness struct {
	Store broker.Store
	// NewFence returns a fence that holds until drop is called.
	NewFence func(t *testing.T) (f broker.Fence, drop func())
	// Compact discards the history before the store's current revision.
	Compact func(t *testing.T)
}

// Run runs the suite. newHarness must return an empty store each call.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"LoadMissing", testLoadMissing},
		{"CreateOnce", testCreateOnce},
		{"UpdateCompares", testUpdateCompares},
		{"RoundTrip", testRoundTrip},
		{"Fence", testFence},
		{"LoadAll", testLoadAll},
		{"WatchInOrder", testWatch},
		{"WatchCompacted", testWatchCompacted},
		{"NoLostUpdates", testNoLostUpdates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testLoadMissing(t *testing.T, h Harness) {
	v, err := h.Store.Load(ctx(t), "nobody")
	if err != nil || v.Revision != 0 {
		t.Fatalf("Load(missing) = rev %d, %v; want rev 0, nil", v.Revision, err)
	}
}

func testCreateOnce(t *testing.T, h Harness) {
	c := ctx(t)
	rev, err := h.Store.Put(c, "a", broker.Record{Generation: 1, State: broker.StateOK}, broker.Cond{})
	if err != nil || rev == 0 {
		t.Fatalf("create: rev %d, %v", rev, err)
	}
	if _, err := h.Store.Put(c, "a", broker.Record{Generation: 9}, broker.Cond{}); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	v, _ := h.Store.Load(c, "a")
	if v.Record.Generation != 1 || v.Revision != rev {
		t.Fatalf("after failed create: gen %d rev %d, want 1 %d", v.Record.Generation, v.Revision, rev)
	}
}

func testUpdateCompares(t *testing.T, h Harness) {
	c := ctx(t)
	rev1, err := h.Store.Put(c, "a", broker.Record{Generation: 1}, broker.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := h.Store.Put(c, "a", broker.Record{Generation: 2}, broker.Cond{Revision: rev1})
	if err != nil || rev2 <= rev1 {
		t.Fatalf("update: rev %d, %v", rev2, err)
	}
	if _, err := h.Store.Put(c, "a", broker.Record{Generation: 3}, broker.Cond{Revision: rev1}); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	v, _ := h.Store.Load(c, "a")
	if v.Record.Generation != 2 {
		t.Fatalf("generation %d, want 2", v.Record.Generation)
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	c := ctx(t)
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	want := broker.Record{
		Generation: 7, AccessToken: "at-secret", RefreshToken: "rt-secret", TokenType: "Bearer",
		ObtainedAt: now, ExpiresAt: now.Add(24 * time.Hour), LoginAt: now.Add(-time.Hour),
		State: broker.StateDegraded, Reason: "server_error from token endpoint", LastResult: "server_error",
		LastAttemptAt: now, LastRefreshAt: now, LastCause: broker.CauseDemand, DemandStreak: 2,
		Failures: 3, RetryAt: now.Add(time.Minute),
		Claim: &broker.Claim{Holder: "r1", Deadline: now.Add(time.Minute), Cause: broker.CauseSchedule},
	}
	if _, err := h.Store.Put(c, "a", want, broker.Cond{}); err != nil {
		t.Fatal(err)
	}
	v, err := h.Store.Load(c, "a")
	if err != nil || v.Unreadable != "" {
		t.Fatalf("Load: %v %q", err, v.Unreadable)
	}
	got := v.Record
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken || got.Generation != want.Generation ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.LoginAt.Equal(want.LoginAt) || !got.RetryAt.Equal(want.RetryAt) ||
		got.State != want.State || got.Reason != want.Reason || got.LastCause != want.LastCause ||
		got.DemandStreak != want.DemandStreak || got.Failures != want.Failures || got.Claim == nil ||
		got.Claim.Holder != "r1" || !got.Claim.Deadline.Equal(want.Claim.Deadline) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func testFence(t *testing.T, h Harness) {
	c := ctx(t)
	f, drop := h.NewFence(t)
	rev, err := h.Store.Put(c, "a", broker.Record{Generation: 1}, broker.Cond{Fence: &f})
	if err != nil {
		t.Fatalf("fenced create while the fence holds: %v", err)
	}
	drop()
	if _, err := h.Store.Put(c, "a", broker.Record{Generation: 2}, broker.Cond{Revision: rev, Fence: &f}); !errors.Is(err, broker.ErrFenced) {
		t.Fatalf("fenced write after the fence dropped: %v, want ErrFenced", err)
	}
	if _, err := h.Store.Put(c, "a", broker.Record{Generation: 2}, broker.Cond{Revision: rev + 1000, Fence: &f}); !errors.Is(err, broker.ErrConflict) && !errors.Is(err, broker.ErrFenced) {
		t.Fatalf("fenced write with stale revision: %v", err)
	}
	v, _ := h.Store.Load(c, "a")
	if v.Record.Generation != 1 {
		t.Fatalf("generation %d after fenced writes, want 1", v.Record.Generation)
	}
}

func testLoadAll(t *testing.T, h Harness) {
	c := ctx(t)
	for i := range 5 {
		if _, err := h.Store.Put(c, fmt.Sprintf("c%d", i), broker.Record{Generation: uint64(i + 1)}, broker.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	all, rev, err := h.Store.LoadAll(c)
	if err != nil || len(all) != 5 || rev == 0 {
		t.Fatalf("LoadAll: %d records rev %d %v", len(all), rev, err)
	}
	for i := range 5 {
		if v := all[fmt.Sprintf("c%d", i)]; v.Record.Generation != uint64(i+1) || v.Revision == 0 {
			t.Fatalf("c%d: %+v", i, v)
		}
	}
}

func testWatch(t *testing.T, h Harness) {
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	_, rev, err := h.Store.LoadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 10)
	done := make(chan error, 1)
	go func() {
		done <- h.Store.Watch(c, rev, func(name string, v broker.Versioned) {
			if name == "w" {
				got <- v.Record.Generation
			}
		})
	}()
	r := int64(0)
	for g := uint64(1); g <= 3; g++ {
		if r, err = h.Store.Put(c, "w", broker.Record{Generation: g}, broker.Cond{Revision: r}); err != nil {
			t.Fatal(err)
		}
	}
	for want := uint64(1); want <= 3; want++ {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("watch delivered generation %d, want %d", g, want)
			}
		case <-c.Done():
			t.Fatal("watch delivered nothing")
		}
	}
	cancel()
	<-done
}

// testWatchCompacted: a watch from a revision that is gone says so, so that
// the cache knows to load everything again.
func testWatchCompacted(t *testing.T, h Harness) {
	c := ctx(t)
	_, rev, err := h.Store.LoadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	r := int64(0)
	for g := uint64(1); g <= 3; g++ {
		if r, err = h.Store.Put(c, "w", broker.Record{Generation: g}, broker.Cond{Revision: r}); err != nil {
			t.Fatal(err)
		}
	}
	h.Compact(t)
	err = h.Store.Watch(c, rev, func(string, broker.Versioned) {})
	if !errors.Is(err, broker.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v, want ErrCompacted", err)
	}
}

// testNoLostUpdates has many writers do read-compare-write loops: every
// increment must land exactly once.
func testNoLostUpdates(t *testing.T, h Harness) {
	c := ctx(t)
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, err := h.Store.Load(c, "n")
				if err != nil {
					errs <- err
					return
				}
				rec := v.Record
				rec.Generation++
				_, err = h.Store.Put(c, "n", rec, broker.Cond{Revision: v.Revision})
				if errors.Is(err, broker.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
				}
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, _ := h.Store.Load(c, "n")
	if v.Record.Generation != writers {
		t.Fatalf("generation %d after %d increments", v.Record.Generation, writers)
	}
}
