package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
)

// TestHistoryChecker: the checker accepts a legal history and finds each
// kind of breach in a broken one (a control run: a checker that accepts
// everything would prove nothing).
func TestHistoryChecker(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	obs := func(r int, start, end int, gen uint64, tok string) Observation {
		fp := (&clients.Token{AccessToken: tok}).Fingerprint()
		return Observation{Replica: r, Op: "GetToken", Start: at(start), End: at(end), Generation: gen, Fingerprint: fp}
	}
	legal := []Observation{
		obs(0, 0, 10, 1, "a"), obs(1, 0, 10, 1, "a"),
		obs(0, 20, 30, 2, "b"),
		obs(1, 20, 30, 1, "a"), // another replica may lag behind
		obs(0, 25, 40, 1, "a"), // overlaps the call that returned 2: no order
		obs(1, 40, 50, 2, "b"),
	}
	h := &History{obs: legal}
	if v := h.Violations(10); len(v) != 0 {
		t.Fatalf("legal history flagged: %v", v)
	}
	for _, c := range []struct {
		name string
		add  Observation
		want string
	}{
		{"replica goes back", obs(0, 45, 50, 1, "a"), "replica 0 served generation 1"},
		{"two tokens one generation", obs(1, 60, 70, 2, "c"), "generation 2 is two tokens"},
		{"one token two generations", obs(1, 60, 70, 3, "b"), "is two generations"},
	} {
		h := &History{obs: append(append([]Observation(nil), legal...), c.add)}
		v := h.Violations(10)
		if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), c.want) {
			t.Errorf("%s: violations %q, want one with %q", c.name, v, c.want)
		}
	}
}
