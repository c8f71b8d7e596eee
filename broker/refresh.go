package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/tokenbroker/tokenbroker/broker/provider"
)

// step is what the leader does next for a connection.
type step struct {
	cause Cause     // refresh now with this cause; "" to wait
	until time.Time // wait until then (zero: until something changes)
	note  string    // why it waits, for the record when throttled
}

// plan decides the next step for v at now. It is a pure function of the
// record, the pending requests and the clock.
func (b *Broker) plan(c *conn, v *Versioned, now time.Time) step {
	rec := &v.Record
	selfServe := c.cfg.Grant == GrantClientCredentials // no refresh token to lose
	if v.Unreadable != "" {
		if selfServe {
			// A record sealed with a lost key: fetch a new token over it.
			return step{cause: CauseSchedule}
		}
		return step{} // needs a new seed
	}
	if v.Revision == 0 {
		if selfServe {
			return step{cause: CauseSchedule}
		}
		return step{} // NEEDS_SEED: wait for a seed
	}
	if rec.Claim != nil {
		if now.Before(rec.Claim.Deadline) {
			return step{until: rec.Claim.Deadline}
		}
		return step{cause: CauseRecovery}
	}
	if rec.State == StateNeedsReauth {
		if selfServe && c.admin.Load() {
			// RefreshNow after the operator fixed the client secret.
			return step{cause: CauseAdmin}
		}
		return step{}
	}
	if rec.State == StateNeedsSeed && !selfServe {
		return step{}
	}
	if c.admin.Load() {
		return step{cause: CauseAdmin}
	}
	var at time.Time
	cause := CauseSchedule
	if c.cfg.Grant == GrantRefreshToken && rec.RefreshToken == "" {
		return step{}
	}
	if rec.AccessToken == "" {
		at = now
	} else {
		at = refreshTime(c.cfg.Name, rec, b.timing)
	}
	if d := c.demand.Load(); d > rec.Generation {
		if t := throttledUntil(rec, b.timing); now.Before(t) {
			if t.Before(at) {
				at = t
			}
			return step{until: laterOf(at, rec.RetryAt), note: fmt.Sprintf("refresh throttled until %s: fresh tokens were reported bad again and again", t.UTC().Format(time.RFC3339))}
		}
		at, cause = now, CauseDemand
	}
	at = laterOf(at, rec.RetryAt)
	if !now.Before(at) {
		return step{cause: cause}
	}
	return step{until: at}
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lead runs the refresh loop of one connection while this replica leads.
// It returns ErrFenced when a fenced write shows the leadership is gone.
func (b *Broker) lead(ctx context.Context, c *conn, fence Fence) error {
	log := b.log.With("connection", c.cfg.Name)
	for ctx.Err() == nil {
		changed, v := c.watchChan()
		now := b.clock.Now()
		s := b.plan(c, v, now)
		if s.cause != "" {
			err := b.refresh(ctx, c, &fence)
			switch {
			case errors.Is(err, ErrFenced):
				log.Warn("fenced off: no longer leading")
				return err
			case errors.Is(err, ErrConflict), errors.Is(err, errClaimedBySomeoneElse), errors.Is(err, errSuperseded):
				// The record moved; wait for the watch to show it.
				b.waitChange(ctx, changed, time.Second)
			case err != nil && ctx.Err() == nil:
				log.Warn("refresh did not complete", "err", err)
				b.waitChange(ctx, changed, b.timing.BackoffMin)
			}
			continue
		}
		if s.note != "" && v.Record.LastResult != "throttled" {
			b.markThrottled(ctx, c, v, s.note, &fence)
		}
		var timer clockwork.Timer
		var fire <-chan time.Time
		if !s.until.IsZero() {
			timer = b.clock.NewTimer(s.until.Sub(now))
			fire = timer.Chan()
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-c.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
	return nil
}

// waitChange waits for the record to change, at most max of real time.
func (b *Broker) waitChange(ctx context.Context, changed <-chan struct{}, max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-changed:
	case <-t.C:
	}
}

func (b *Broker) markThrottled(ctx context.Context, c *conn, v *Versioned, note string, fence *Fence) {
	rec := v.Record
	rec.State, rec.Reason, rec.LastResult = StateDegraded, note, "throttled"
	if _, err := b.store.Put(ctx, c.cfg.Name, rec, Cond{Revision: v.Revision, Fence: fence}); err != nil {
		b.log.Debug("recording throttle failed", "connection", c.cfg.Name, "err", err)
	}
}

// outcome is the result of one call to the token endpoint.
type outcome struct {
	tok   provider.Token
	err   error
	cause Cause
	// interrupted describes a claim cut off by a crash, for the reason text.
	interrupted *Claim
}

// refresh decides again on the freshly read record, claims the connection
// (fenced by leadership), calls the token endpoint and stores the result.
// Between the identity provider's answer and the store, the answer is never
// dropped while the process lives.
func (b *Broker) refresh(ctx context.Context, c *conn, fence *Fence) error {
	name := c.cfg.Name
	v, err := b.store.Load(ctx, name) // linearizable: never decide on a stale cache
	if err != nil {
		return err
	}
	now := b.clock.Now()
	// Decide again on the fresh record.
	s := b.plan(c, &v, now)
	if s.cause == "" {
		b.apply(name, v)
		return errSuperseded
	}
	cause := s.cause
	rec := v.Record
	var interrupted *Claim
	if rec.Claim != nil {
		if now.Before(rec.Claim.Deadline) {
			return errClaimedBySomeoneElse
		}
		interrupted = rec.Claim
		b.log.Warn("resolving a refresh cut off before it was stored", "connection", name, "holder", rec.Claim.Holder, "deadline", rec.Claim.Deadline)
	}
	claimed := rec
	claimed.Claim = &Claim{Holder: b.id, Deadline: now.Add(b.timing.ClaimTTL), Cause: cause}
	claimed.LastAttemptAt = now
	if v.Revision == 0 && claimed.State == "" {
		claimed.State = StateNeedsSeed
	}
	// Once claiming starts it finishes, even if leadership ends meanwhile: a
	// claim that etcd applied while this side gave up would block every
	// refresh until its deadline. The fence keeps a deposed leader out.
	life := context.WithoutCancel(ctx)
	cctx, ccancel := context.WithTimeout(life, b.timing.TokenCallTimeout)
	claimRev, err := b.store.Put(cctx, name, claimed, Cond{Revision: v.Revision, Fence: fence})
	ccancel()
	if err != nil {
		return err
	}
	if cause == CauseAdmin {
		c.admin.Store(false)
	}
	b.inflight.Add(1)
	defer b.inflight.Done()

	// The call and the store outlive leadership: a deposed leader may still
	// store the rotated token if nobody wrote since (DESIGN.md invariant 3).
	callCtx, cancel := context.WithTimeout(life, b.timing.TokenCallTimeout)
	start := b.clock.Now()
	var tok provider.Token
	if c.cfg.Grant == GrantClientCredentials {
		tok, err = c.prov.ClientCredentials(callCtx)
	} else {
		tok, err = c.prov.Refresh(callCtx, rec.RefreshToken)
	}
	cancel()
	b.metrics.Refresh(name, resultOf(err), b.clock.Since(start))
	if b.opts.AfterTokenCall != nil {
		b.opts.AfterTokenCall(name)
	}
	c.refreshes.Add(1)
	o := outcome{tok: tok, err: err, cause: cause, interrupted: interrupted}
	// Fast path: nobody wrote since the claim, so the result replaces it.
	res := b.resolve(c, claimed, o)
	if _, perr := b.store.Put(life, name, res, Cond{Revision: claimRev}); perr == nil {
		b.logOutcome(c, res, o)
		return o.err
	}
	return b.finish(life, c, rec.Generation, o)
}

// finish stores an outcome. It compares the generation, not the revision:
// the result lands as long as no newer token was stored meanwhile. While etcd
// is unreachable it keeps trying, so a rotated refresh token is not dropped.
func (b *Broker) finish(ctx context.Context, c *conn, base uint64, o outcome) error {
	name := c.cfg.Name
	log := b.log.With("connection", name, "generation", base)
	for attempt := 1; ; attempt++ {
		v, err := b.store.Load(ctx, name)
		if err == nil {
			if v.Record.Generation != base {
				if o.err == nil {
					log.Warn("a newer token was stored meanwhile; dropping the one obtained", "fingerprint", Fingerprint(o.tok.AccessToken))
				}
				return errSuperseded
			}
			if o.err != nil && (v.Record.Claim == nil || v.Record.Claim.Holder != b.id) {
				return errSuperseded // someone else resolved or reclaimed it
			}
			rec := b.resolve(c, v.Record, o)
			if _, err = b.store.Put(ctx, name, rec, Cond{Revision: v.Revision}); err == nil {
				b.logOutcome(c, rec, o)
				return o.err
			}
			if errors.Is(err, ErrConflict) {
				continue
			}
		}
		if ctx.Err() != nil {
			if o.err == nil {
				log.Error("stopping with a token that could not be stored", "fingerprint", Fingerprint(o.tok.AccessToken), "err", err)
			}
			return err
		}
		log.Warn("storing the refresh result failed; retrying", "attempt", attempt, "err", err)
		b.sleep(ctx, backoff(attempt, Timing{BackoffMin: 100 * time.Millisecond, BackoffMax: 2 * time.Second}, rand.Float64(), 0))
	}
}

// resolve applies an outcome to the record read at the claim's generation.
func (b *Broker) resolve(c *conn, rec Record, o outcome) Record {
	now := b.clock.Now()
	rec.Claim = nil
	rec.LastAttemptAt = now
	if o.err == nil {
		if o.cause == CauseDemand {
			if rec.LastCause == CauseDemand && now.Sub(rec.LastRefreshAt) < b.timing.MinDemandInterval {
				rec.DemandStreak++
			} else {
				rec.DemandStreak = 1
			}
		} else {
			rec.DemandStreak = 0
		}
		rec.Generation++
		rec.AccessToken = o.tok.AccessToken
		if o.tok.RefreshToken != "" {
			rec.RefreshToken = o.tok.RefreshToken
		}
		rec.TokenType = o.tok.TokenType
		rec.ObtainedAt = now
		rec.ExpiresAt = o.tok.Expiry
		if o.cause == CauseSeed || rec.LoginAt.IsZero() {
			rec.LoginAt = now
		}
		rec.State, rec.Reason, rec.LastResult = StateOK, "", "ok"
		rec.LastRefreshAt, rec.LastCause = now, o.cause
		rec.Failures, rec.RetryAt = 0, time.Time{}
		return rec
	}
	code := resultOf(o.err)
	rec.LastResult = code
	rec.Failures++
	if provider.IsPermanent(o.err) {
		rec.State = StateNeedsReauth
		rec.Reason = fmt.Sprintf("the identity provider refused the credentials (%s): %v; log in and seed again", code, o.err)
		if o.interrupted != nil && o.cause == CauseRecovery {
			rec.Reason = fmt.Sprintf("a refresh by replica %s was interrupted before its result was stored (claim expired %s); the identity provider then refused the refresh token (%s), so the interrupted refresh most likely used it: log in and seed again",
				o.interrupted.Holder, o.interrupted.Deadline.UTC().Format(time.RFC3339), code)
		}
		rec.RetryAt = time.Time{}
		return rec
	}
	var pe *provider.Error
	retryAfter := time.Duration(0)
	if errors.As(o.err, &pe) {
		retryAfter = pe.RetryAfter
	}
	rec.State = StateDegraded
	rec.Reason = fmt.Sprintf("refresh failed (%s), retry %d: %v", code, rec.Failures, o.err)
	rec.RetryAt = now.Add(backoff(rec.Failures, b.timing, rand.Float64(), retryAfter))
	return rec
}

func (b *Broker) logOutcome(c *conn, rec Record, o outcome) {
	log := b.log.With("connection", c.cfg.Name, "cause", string(o.cause))
	switch {
	case o.err == nil:
		log.Info("token refreshed", "generation", rec.Generation, "expires_at", rec.ExpiresAt, "fingerprint", Fingerprint(rec.AccessToken), "rotated", o.tok.Rotated)
		if lt := c.cfg.RefreshTokenLifetime; lt > 0 && !rec.LoginAt.IsZero() {
			dies := rec.LoginAt.Add(lt)
			if left := dies.Sub(b.clock.Now()); left < c.cfg.RefreshTokenWarning {
				log.Warn("the refresh token dies soon whatever the rotation: log in again", "dies_at", dies, "left", left.Round(time.Minute))
			}
		}
	case rec.State == StateNeedsReauth:
		log.Error("credentials refused for good; connection needs a new login", "reason", rec.Reason)
	default:
		log.Warn("refresh failed; the current token stays in service while valid", "reason", rec.Reason, "retry_at", rec.RetryAt)
	}
}

// resultOf names the result of a token call for records and metrics.
func resultOf(err error) string {
	if err == nil {
		return "ok"
	}
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Code != "" {
		return pe.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "error"
}
