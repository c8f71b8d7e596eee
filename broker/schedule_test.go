package broker

import (
	"testing"
	"time"
)

func TestRefreshTime(t *testing.T) {
	tm := DefaultTiming
	t0 := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	rec := &Record{Generation: 3, ObtainedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
	at := refreshTime("c", rec, tm)
	lo := t0.Add(time.Duration(float64(24*time.Hour) * (tm.RefreshAt - tm.Jitter)))
	hi := t0.Add(time.Duration(float64(24*time.Hour) * tm.RefreshAt))
	if at.Before(lo) || at.After(hi) {
		t.Fatalf("refresh at %v, want within [%v, %v]", at, lo, hi)
	}
	if again := refreshTime("c", rec, tm); !again.Equal(at) {
		t.Fatal("refresh time is not a pure function of the token")
	}
	// Jitter spreads connections.
	seen := map[time.Time]bool{}
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		seen[refreshTime(name, rec, tm)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("jitter gave %d distinct times for 6 connections", len(seen))
	}
	// A short-lived token is refreshed before the margin.
	short := &Record{ObtainedAt: t0, ExpiresAt: t0.Add(40 * time.Second)}
	if at := refreshTime("c", short, tm); at.After(short.ExpiresAt.Add(-tm.ExpiryMargin)) {
		t.Fatalf("refresh at %v is after the serving margin", at)
	}
}

func TestBackoff(t *testing.T) {
	tm := DefaultTiming
	prev := time.Duration(0)
	for n := 1; n <= 30; n++ {
		d := backoff(n, tm, 0, 0)
		if d < prev || d > tm.BackoffMax {
			t.Fatalf("backoff(%d) = %v after %v, max %v", n, d, prev, tm.BackoffMax)
		}
		prev = d
	}
	if d := backoff(1, tm, 0, time.Minute); d != time.Minute {
		t.Fatalf("Retry-After not honoured: %v", d)
	}
	if d := backoff(3, tm, 0.99, 0); d >= backoff(3, tm, 0, 0) {
		t.Fatal("jitter does not shorten the wait")
	}
}

func TestThrottledUntil(t *testing.T) {
	tm := DefaultTiming
	t0 := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		rec  Record
		want time.Time
	}{
		{Record{LastCause: CauseSchedule, LastRefreshAt: t0}, time.Time{}},
		{Record{LastCause: CauseDemand, DemandStreak: 1, LastRefreshAt: t0}, time.Time{}},
		{Record{LastCause: CauseDemand, DemandStreak: 2, LastRefreshAt: t0}, t0.Add(tm.MinDemandInterval)},
	} {
		if got := throttledUntil(&tc.rec, tm); !got.Equal(tc.want) {
			t.Errorf("%+v: %v, want %v", tc.rec, got, tc.want)
		}
	}
}
