package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
)

// Observation is one token a caller got from a replica.
type Observation struct {
	Replica     int
	Op          string // "GetToken", "Invalidate", ...
	Start, End  time.Time
	Generation  uint64
	Fingerprint string
}

// History records what callers saw, to check the generation invariants
// (DESIGN.md 4) over a whole fault run:
//
//   - a replica never serves a lower generation than one it served before:
//     if a call to replica r ended before another call to r started, the
//     later one returns the same generation or a greater one;
//   - one generation is one token, across every replica (a split brain that
//     stored two tokens under one generation shows up here), and one token
//     is one generation.
type History struct {
	mu  sync.Mutex
	obs []Observation
}

// Add records a token that replica returned for a call made from start to
// now.
func (h *History) Add(replica int, op string, start time.Time, tok *clients.Token) {
	o := Observation{Replica: replica, Op: op, Start: start, End: time.Now(), Generation: tok.Generation, Fingerprint: tok.Fingerprint()}
	h.mu.Lock()
	h.obs = append(h.obs, o)
	h.mu.Unlock()
}

// Len is the number of observations.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.obs)
}

// MaxGeneration is the greatest generation observed.
func (h *History) MaxGeneration() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var g uint64
	for _, o := range h.obs {
		g = max(g, o.Generation)
	}
	return g
}

// Generations lists the distinct generations observed, sorted.
func (h *History) Generations() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var gs []uint64
	for _, o := range h.obs {
		gs = append(gs, o.Generation)
	}
	slices.Sort(gs)
	return slices.Compact(gs)
}

// Violations returns every breach of the invariants, at most limit.
func (h *History) Violations(limit int) []string {
	h.mu.Lock()
	obs := slices.Clone(h.obs)
	h.mu.Unlock()
	var out []string
	add := func(s string) bool {
		if len(out) < limit {
			out = append(out, s)
		}
		return len(out) < limit
	}
	fpOf := map[uint64]string{}
	genOf := map[string]uint64{}
	for _, o := range obs {
		if fp, ok := fpOf[o.Generation]; ok && fp != o.Fingerprint {
			if !add(fmt.Sprintf("generation %d is two tokens: %s and %s", o.Generation, fp, o.Fingerprint)) {
				return out
			}
		}
		fpOf[o.Generation] = o.Fingerprint
		if g, ok := genOf[o.Fingerprint]; ok && g != o.Generation {
			if !add(fmt.Sprintf("token %s is two generations: %d and %d", o.Fingerprint, g, o.Generation)) {
				return out
			}
		}
		genOf[o.Fingerprint] = o.Generation
	}
	byReplica := map[int][]Observation{}
	for _, o := range obs {
		byReplica[o.Replica] = append(byReplica[o.Replica], o)
	}
	for r, os := range byReplica {
		byStart := slices.Clone(os)
		slices.SortFunc(byStart, func(a, b Observation) int { return a.Start.Compare(b.Start) })
		byEnd := os
		slices.SortFunc(byEnd, func(a, b Observation) int { return a.End.Compare(b.End) })
		var maxGen uint64
		var maxObs Observation
		j := 0
		for _, b := range byStart {
			for j < len(byEnd) && byEnd[j].End.Before(b.Start) {
				if byEnd[j].Generation > maxGen {
					maxGen, maxObs = byEnd[j].Generation, byEnd[j]
				}
				j++
			}
			if b.Generation < maxGen {
				if !add(fmt.Sprintf("replica %d served generation %d (%s at %s) after it had served %d (%s ended %s)",
					r, b.Generation, b.Op, b.Start.Format("15:04:05.000"), maxGen, maxObs.Op, maxObs.End.Format("15:04:05.000"))) {
					return out
				}
			}
		}
	}
	return out
}

// Check fails the test on any violation.
func (h *History) Check(t testing.TB) {
	t.Helper()
	for _, v := range h.Violations(20) {
		t.Error(v)
	}
	t.Logf("history: %d tokens observed, generations %v", h.Len(), h.Generations())
}
