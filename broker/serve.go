package broker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Token is an access token as handed to callers.
type Token struct {
	Connection  string
	AccessToken string
	TokenType   string
	ExpiresAt   time.Time
	Generation  uint64
	APIKey      string
}

// String keeps the token out of logs and fmt output.
func (t Token) String() string {
	return fmt.Sprintf("token{%s gen %d fp %s}", t.Connection, t.Generation, Fingerprint(t.AccessToken))
}

func (b *Broker) isReady() bool { return isClosed(b.ready) }

// servable returns the token of v if it may be served at now.
func (b *Broker) servable(c *conn, v *Versioned, now time.Time) (Token, error) {
	rec := &v.Record
	if v.Unreadable != "" {
		return Token{}, fmt.Errorf("%w: %s", ErrKeyUnavailable, v.Unreadable)
	}
	if rec.Valid(now, b.timing.ExpiryMargin) {
		return Token{
			Connection: c.cfg.Name, AccessToken: rec.AccessToken, TokenType: rec.TokenType,
			ExpiresAt: rec.ExpiresAt, Generation: rec.Generation, APIKey: c.cfg.APIKey,
		}, nil
	}
	switch {
	case v.Revision == 0 && c.cfg.Grant == GrantRefreshToken, rec.State == StateNeedsSeed && rec.Claim == nil:
		return Token{}, fmt.Errorf("%w: connection %q has no credentials yet: seed it (tokenbroker login or SeedToken)", ErrNeedsSeed, c.cfg.Name)
	case rec.State == StateNeedsReauth && rec.Claim == nil:
		return Token{}, fmt.Errorf("%w: %s", ErrNeedsReauth, rec.Reason)
	case v.Revision == 0:
		return Token{}, fmt.Errorf("%w: the first token of %q has not been fetched yet", ErrTokenUnavailable, c.cfg.Name)
	case rec.Reason != "":
		return Token{}, fmt.Errorf("%w: token of generation %d expired at %s; %s", ErrTokenUnavailable, rec.Generation, rec.ExpiresAt.UTC().Format(time.RFC3339), rec.Reason)
	default:
		return Token{}, fmt.Errorf("%w: token of generation %d expired at %s and is being refreshed", ErrTokenUnavailable, rec.Generation, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
}

// GetToken returns the current token of a connection from the cache, with no
// etcd round trip. If minValidity is set and the token expires sooner, it has
// the leader refresh and waits for the new token.
func (b *Broker) GetToken(ctx context.Context, name string, minValidity time.Duration) (Token, error) {
	c, err := b.conn(name)
	if err != nil {
		return Token{}, err
	}
	if minValidity < 0 {
		return Token{}, fmt.Errorf("%w: min_validity must not be negative", ErrInvalidArgument)
	}
	if !b.isReady() {
		return Token{}, ErrNotReady
	}
	v := c.cur.Load()
	now := b.clock.Now()
	tok, err := b.servable(c, v, now)
	if err != nil || minValidity == 0 || tok.ExpiresAt.Sub(now) >= minValidity {
		return tok, err
	}
	if life := v.Record.ExpiresAt.Sub(v.Record.ObtainedAt); minValidity > life-b.timing.ExpiryMargin {
		return Token{}, fmt.Errorf("%w: asked for %v but tokens of %q live about %v", ErrMinValidity, minValidity, name, life.Round(time.Second))
	}
	if err := b.request(ctx, c, tok.Generation, CauseDemand); err != nil {
		return Token{}, err
	}
	tok, err = b.wait(ctx, c, tok.Generation, time.Time{})
	if err != nil {
		return Token{}, err
	}
	if tok.ExpiresAt.Sub(b.clock.Now()) < minValidity {
		return Token{}, fmt.Errorf("%w: the new token of %q expires at %s", ErrMinValidity, name, tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return tok, nil
}

// Invalidate reports that the token of generation gen was rejected upstream
// and returns a token of a greater generation. Any number of reports of one
// generation, on any number of replicas, cause one refresh.
func (b *Broker) Invalidate(ctx context.Context, name string, gen uint64, reason string) (Token, error) {
	c, err := b.conn(name)
	if err != nil {
		return Token{}, err
	}
	if !b.isReady() {
		return Token{}, ErrNotReady
	}
	c.invalidations.Add(1)
	b.metrics.Invalidate(name)
	v := c.cur.Load()
	cur := v.Record.Generation
	if gen > cur {
		// The caller may hold a token from a replica whose watch is ahead of
		// ours: ask etcd before calling the report wrong.
		stored, err := b.store.Load(ctx, name)
		if err != nil {
			return Token{}, err
		}
		if gen > stored.Record.Generation {
			return Token{}, fmt.Errorf("%w: reported generation %d, current is %d", ErrGenerationAhead, gen, stored.Record.Generation)
		}
		if _, err := b.wait(ctx, c, gen-1, time.Time{}); err != nil {
			return Token{}, err
		}
		v = c.cur.Load()
		cur = v.Record.Generation
	}
	now := b.clock.Now()
	tok, err := b.servable(c, v, now)
	if gen < cur && err == nil {
		return tok, nil // a newer token exists already
	}
	if errors.Is(err, ErrNeedsSeed) || errors.Is(err, ErrNeedsReauth) || errors.Is(err, ErrKeyUnavailable) {
		return Token{}, err
	}
	b.log.Info("token reported bad", "connection", name, "generation", cur, "reason", truncate(reason, 200))
	if err := b.request(ctx, c, cur, CauseDemand); err != nil {
		return Token{}, err
	}
	return b.wait(ctx, c, cur, time.Time{})
}

// wait waits for a servable token of a generation greater than gen. A
// connection that cannot get one (NEEDS_REAUTH, or a record this replica
// cannot open) ends the wait at once; with since set, only once an attempt
// made since then has failed.
func (b *Broker) wait(ctx context.Context, c *conn, gen uint64, since time.Time) (Token, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timing.Wait)
		defer cancel()
	}
	for {
		changed, v := c.watchChan()
		rec := &v.Record
		if rec.Generation > gen {
			if tok, err := b.servable(c, v, b.clock.Now()); err == nil {
				return tok, nil
			}
		}
		settled := since.IsZero() || (rec.Claim == nil && !rec.LastAttemptAt.Before(since))
		if v.Unreadable != "" && settled {
			return Token{}, fmt.Errorf("%w: %s", ErrKeyUnavailable, v.Unreadable)
		}
		if rec.State == StateNeedsReauth && rec.Claim == nil && rec.Generation == gen && settled {
			return Token{}, fmt.Errorf("%w: %s", ErrNeedsReauth, rec.Reason)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return Token{}, ctx.Err()
			}
			switch {
			case rec.LastResult == "throttled":
				return Token{}, fmt.Errorf("%w: %s", ErrThrottled, rec.Reason)
			case rec.Failures > 0 && rec.State == StateDegraded:
				return Token{}, fmt.Errorf("%w: %s", ErrRefreshFailed, rec.Reason)
			}
			return Token{}, fmt.Errorf("%w: waiting for a generation after %d", ErrDeadline, gen)
		}
	}
}

// Seed gives a connection its first credentials: a refresh token, or an
// authorization code with its PKCE verifier and redirect URI.
type Seed struct {
	RefreshToken string
	Code         string
	CodeVerifier string
	RedirectURI  string
}

// Seed stores the credentials a connection starts from. It calls the token
// endpoint at once (to exchange the code, or to check the refresh token and
// get an access token) under a claim, so it never races the leader.
func (b *Broker) Seed(ctx context.Context, name string, s Seed) (Status, error) {
	c, err := b.conn(name)
	if err != nil {
		return Status{}, err
	}
	if c.cfg.Grant != GrantRefreshToken {
		return Status{}, fmt.Errorf("%w: connection %q uses %s and needs no seed", ErrSeedRejected, name, c.cfg.Grant)
	}
	if (s.RefreshToken == "") == (s.Code == "") {
		return Status{}, fmt.Errorf("%w: give either a refresh token or an authorization code", ErrInvalidArgument)
	}
	if s.Code != "" && s.RedirectURI == "" {
		return Status{}, fmt.Errorf("%w: an authorization code needs its redirect_uri", ErrInvalidArgument)
	}
	v, err := b.store.Load(ctx, name)
	if err != nil {
		return Status{}, err
	}
	now := b.clock.Now()
	rec := v.Record
	if rec.Claim != nil && now.Before(rec.Claim.Deadline) {
		return Status{}, fmt.Errorf("%w: a refresh of %q is in flight; seed again in a moment", ErrRefreshFailed, name)
	}
	claimed := rec
	claimed.Claim = &Claim{Holder: b.id, Deadline: now.Add(b.timing.ClaimTTL), Cause: CauseSeed}
	if v.Revision == 0 {
		claimed.State = StateNeedsSeed
	}
	// As in refresh: a claim once sent is seen through, so that a caller who
	// gives up does not leave a claim behind that blocks refreshes.
	life := context.WithoutCancel(ctx)
	cctx, ccancel := context.WithTimeout(life, b.timing.TokenCallTimeout)
	rev, err := b.store.Put(cctx, name, claimed, Cond{Revision: v.Revision})
	ccancel()
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return Status{}, fmt.Errorf("%w: the record of %q changed meanwhile; seed again", ErrRefreshFailed, name)
		}
		return Status{}, err
	}
	b.inflight.Add(1)
	defer b.inflight.Done()
	callCtx, cancel := context.WithTimeout(life, b.timing.TokenCallTimeout)
	start := b.clock.Now()
	var o outcome
	o.cause = CauseSeed
	if s.Code != "" {
		o.tok, o.err = c.prov.Exchange(callCtx, s.Code, s.CodeVerifier, s.RedirectURI)
	} else {
		o.tok, o.err = c.prov.Refresh(callCtx, s.RefreshToken)
	}
	cancel()
	b.metrics.Refresh(name, resultOf(o.err), b.clock.Since(start))
	if o.err != nil {
		// A refused seed changes nothing: put the record back as it was.
		restore := rec
		if v.Revision == 0 {
			restore.State = StateNeedsSeed
		}
		if _, err := b.store.Put(life, name, restore, Cond{Revision: rev}); err != nil {
			b.log.Warn("releasing the seed claim failed; it expires by itself", "connection", name, "err", err)
		}
		b.log.Warn("seed refused", "connection", name, "err", o.err)
		if errors.Is(o.err, context.Canceled) {
			return Status{}, o.err
		}
		return Status{}, fmt.Errorf("%w: %v", ErrSeedRejected, o.err)
	}
	if err := b.finish(life, c, rec.Generation, o); err != nil {
		return Status{}, err
	}
	if _, err := b.wait(ctx, c, rec.Generation, time.Time{}); err != nil {
		return Status{}, err
	}
	return b.Status(name)
}

// RefreshNow has the leader refresh a connection now and waits for it.
func (b *Broker) RefreshNow(ctx context.Context, name string) (Status, error) {
	c, err := b.conn(name)
	if err != nil {
		return Status{}, err
	}
	if !b.isReady() {
		return Status{}, ErrNotReady
	}
	v := c.cur.Load()
	// A client_credentials connection has no refresh token to lose: RefreshNow
	// is how an operator retries it after fixing its secret (NEEDS_REAUTH) or
	// replaces a record sealed with a lost key.
	if c.cfg.Grant == GrantRefreshToken {
		if _, err := b.servable(c, v, b.clock.Now()); errors.Is(err, ErrNeedsSeed) || errors.Is(err, ErrNeedsReauth) || errors.Is(err, ErrKeyUnavailable) {
			return Status{}, err
		}
		// NEEDS_REAUTH with a still-valid access token passes servable; an admin
		// request now would stay pending on the leader and fire after the next seed.
		if rec := &v.Record; rec.State == StateNeedsReauth && rec.Claim == nil {
			return Status{}, fmt.Errorf("%w: %s", ErrNeedsReauth, rec.Reason)
		}
	}
	gen := v.Record.Generation
	var since time.Time
	if c.cfg.Grant == GrantClientCredentials {
		since = b.clock.Now()
	}
	if err := b.request(ctx, c, gen, CauseAdmin); err != nil {
		return Status{}, err
	}
	if _, err := b.wait(ctx, c, gen, since); err != nil {
		return Status{}, err
	}
	return b.Status(name)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
