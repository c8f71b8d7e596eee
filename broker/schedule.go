package broker

import (
	"hash/fnv"
	"math"
	"strconv"
	"time"
)

// refreshTime is when the leader refreshes rec's token: after the fraction
// t.RefreshAt of its lifetime, earlier by up to t.Jitter of the lifetime. The
// jitter is drawn from the connection and generation, so it is a pure function
// of the token: every replica and every evaluation agree.
func refreshTime(name string, rec *Record, t Timing) time.Time {
	life := rec.ExpiresAt.Sub(rec.ObtainedAt)
	if life <= 0 {
		return rec.ObtainedAt
	}
	frac := t.RefreshAt - t.Jitter*unitHash(name, rec.Generation)
	at := rec.ObtainedAt.Add(time.Duration(float64(life) * frac))
	// Never later than the point where the token stops being served.
	if last := rec.ExpiresAt.Add(-t.ExpiryMargin); at.After(last) {
		at = last
	}
	return at
}

// unitHash maps (name, generation) to [0, 1).
func unitHash(name string, gen uint64) float64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte(strconv.FormatUint(gen, 10)))
	return float64(h.Sum64()>>11) / float64(1<<53)
}

// backoff is the wait after the n-th consecutive failure (n >= 1): doubling
// from t.BackoffMin to t.BackoffMax, less up to a fifth at random (drawn from
// seed so that it is reproducible), and never shorter than retryAfter.
func backoff(n int, t Timing, seed float64, retryAfter time.Duration) time.Duration {
	d := float64(t.BackoffMin) * math.Pow(2, float64(n-1))
	if d > float64(t.BackoffMax) || math.IsInf(d, 0) {
		d = float64(t.BackoffMax)
	}
	d -= d * 0.2 * seed
	if time.Duration(d) < retryAfter {
		return retryAfter
	}
	return time.Duration(d)
}

// throttledUntil says until when a refresh on demand must wait: after two
// refreshes on demand in a row, each within MinDemandInterval of the token
// before it, the next waits for the interval (DESIGN.md invariant 7).
func throttledUntil(rec *Record, t Timing) time.Time {
	if rec.LastCause != CauseDemand || rec.DemandStreak < 2 {
		return time.Time{}
	}
	return rec.LastRefreshAt.Add(t.MinDemandInterval)
}
