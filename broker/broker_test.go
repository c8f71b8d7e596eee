package broker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
)

// env is a fake Adobe and the connections that point at it.
type env struct {
	fake   *fakeadobe.Server
	url    string
	clock  *clockwork.FakeClock
	prefix string
	keys   *seal.Keyring
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Now())
	fake := fakeadobe.New(fakeadobe.Options{Now: clock.Now})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return &env{fake: fake, url: srv.URL, clock: clock, prefix: newPrefix(), keys: seal.Generate("k1")}
}

func (e *env) conn(name, grant string) broker.ConnectionConfig {
	return broker.ConnectionConfig{
		Name: name, Provider: broker.ProviderAdobe, Grant: grant, IMSURL: e.url,
		ClientID: e.fake.ClientID(), ClientSecret: e.fake.ClientSecret(), APIBaseURL: e.url,
		Scopes: []string{"openid", "AdobeID", "offline_access", "additional_info.projectedProductContext"},
	}
}

// start runs a replica until the test ends and waits until its cache is synced.
func (e *env) start(t *testing.T, id string, conns ...broker.ConnectionConfig) *broker.Broker {
	t.Helper()
	b, _ := e.startStoppable(t, id, conns...)
	return b
}

// startStoppable is start that also returns a function stopping the replica.
func (e *env) startStoppable(t *testing.T, id string, conns ...broker.ConnectionConfig) (*broker.Broker, func()) {
	t.Helper()
	cli, err := etcd.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{
		Config:    broker.Config{Connections: conns, Timing: broker.Timing{SessionTTL: 2 * time.Second, MinDemandInterval: time.Minute}},
		Client:    cli,
		Prefix:    e.prefix,
		Keyring:   e.keys,
		ReplicaID: id,
		Clock:     e.clock,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; cli.Close() }) }
	t.Cleanup(stop)
	select {
	case <-b.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("cache not synced")
	}
	return b, stop
}

// seeded starts one replica with the connection "demo", seeds it and waits
// until the replica leads.
func (e *env) seeded(t *testing.T) (*broker.Broker, context.Context) {
	t.Helper()
	b := e.start(t, "r1", e.conn("demo", broker.GrantRefreshToken))
	ctx := ctxT(t)
	if _, err := b.Seed(ctx, "demo", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, b)
	return b, ctx
}

// eventually waits for cond, failing the test after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitLeader(t *testing.T, bs ...*broker.Broker) *broker.Broker {
	t.Helper()
	var leader *broker.Broker
	eventually(t, "a leader", func() bool {
		for _, b := range bs {
			if b.Leading() {
				leader = b
				return true
			}
		}
		return false
	})
	return leader
}

func TestSeedServeInvalidate(t *testing.T) {
	e := newEnv(t)
	b := e.start(t, "r1", e.conn("demo", broker.GrantRefreshToken))
	ctx := ctxT(t)

	if _, err := b.GetToken(ctx, "demo", 0); !errors.Is(err, broker.ErrNeedsSeed) {
		t.Fatalf("GetToken before seed: %v, want ErrNeedsSeed", err)
	}
	if st, _ := b.Status("demo"); st.State != broker.StateNeedsSeed {
		t.Fatalf("state before seed %s", st.State)
	}
	if _, err := b.GetToken(ctx, "nope", 0); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown connection: %v", err)
	}
	if _, err := b.GetToken(ctx, "", 0); !errors.Is(err, broker.ErrInvalidArgument) {
		t.Fatalf("empty connection: %v", err)
	}
	st, err := b.Seed(ctx, "demo", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != broker.StateOK || st.Generation != 1 {
		t.Fatalf("after seed: %+v", st)
	}
	tok, err := b.GetToken(ctx, "demo", 0)
	if err != nil || tok.Generation != 1 || tok.AccessToken == "" || tok.APIKey != e.fake.ClientID() {
		t.Fatalf("GetToken: %v %v", tok, err)
	}
	if strings.Contains(tok.String(), tok.AccessToken) {
		t.Fatal("Token.String shows the token")
	}
	e.fake.ResetStats()

	// A storm of reports of one generation: one refresh, all get gen+1.
	const callers = 200
	var wg sync.WaitGroup
	gens := make(chan uint64, callers)
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nt, err := b.Invalidate(ctx, "demo", 1, "401 from test")
			if err != nil {
				errs <- err
				return
			}
			gens <- nt.Generation
		}()
	}
	wg.Wait()
	close(gens)
	close(errs)
	for err := range errs {
		t.Fatalf("Invalidate: %v", err)
	}
	for g := range gens {
		if g != 2 {
			t.Fatalf("Invalidate returned generation %d, want 2", g)
		}
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 1 {
		t.Fatalf("%d refresh calls for one reported generation, want 1", n)
	}
	// Reporting the old generation again returns the new token with no call.
	nt, err := b.Invalidate(ctx, "demo", 1, "late report")
	if err != nil || nt.Generation != 2 {
		t.Fatalf("late Invalidate: %v %v", nt, err)
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 1 {
		t.Fatalf("late report caused a refresh: %d calls", n)
	}
	if _, err := b.Invalidate(ctx, "demo", 5, ""); !errors.Is(err, broker.ErrGenerationAhead) {
		t.Fatalf("generation ahead: %v", err)
	}
}

func TestRefreshAheadOfExpiry(t *testing.T) {
	e := newEnv(t)
	b, ctx := e.seeded(t)
	st, _ := b.Status("demo")
	if st.NextRefreshAt.IsZero() || !st.NextRefreshAt.Before(st.ExpiresAt) {
		t.Fatalf("next refresh %v, expiry %v", st.NextRefreshAt, st.ExpiresAt)
	}
	e.clock.Advance(st.NextRefreshAt.Sub(e.clock.Now()) + time.Second)
	eventually(t, "refresh ahead of expiry", func() bool {
		st, _ := b.Status("demo")
		return st.Generation == 2
	})
	tok, err := b.GetToken(ctx, "demo", 0)
	if err != nil || tok.Generation != 2 {
		t.Fatalf("after refresh ahead: %v %v", tok, err)
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 2 {
		t.Fatalf("%d refresh calls, want 2 (seed and one refresh)", n)
	}
}

func TestMinValidity(t *testing.T) {
	e := newEnv(t)
	b, ctx := e.seeded(t)
	e.clock.Advance(2 * time.Hour)
	tok, err := b.GetToken(ctx, "demo", 23*time.Hour)
	if err != nil || tok.Generation != 2 {
		t.Fatalf("GetToken(min_validity 23h): %v %v", tok, err)
	}
	if _, err := b.GetToken(ctx, "demo", 48*time.Hour); !errors.Is(err, broker.ErrMinValidity) {
		t.Fatalf("min_validity beyond lifetime: %v", err)
	}
}

func TestRevokedRefreshTokenNeedsReauth(t *testing.T) {
	e := newEnv(t)
	b, ctx := e.seeded(t)
	e.fake.RevokeRefreshTokens()
	e.fake.ResetStats()
	_, err := b.Invalidate(ctx, "demo", 1, "401")
	if !errors.Is(err, broker.ErrNeedsReauth) {
		t.Fatalf("Invalidate with a revoked refresh token: %v, want ErrNeedsReauth", err)
	}
	st, _ := b.Status("demo")
	if st.State != broker.StateNeedsReauth || !strings.Contains(st.Reason, "invalid_grant") {
		t.Fatalf("status %+v", st)
	}
	// The broker stops calling the token endpoint.
	for range 5 {
		if _, err := b.Invalidate(ctx, "demo", 1, "401"); !errors.Is(err, broker.ErrNeedsReauth) {
			t.Fatalf("Invalidate in NEEDS_REAUTH: %v", err)
		}
	}
	e.clock.Advance(48 * time.Hour)
	if _, err := b.RefreshNow(ctx, "demo"); !errors.Is(err, broker.ErrNeedsReauth) {
		t.Fatalf("RefreshNow in NEEDS_REAUTH: %v", err)
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 1 {
		t.Fatalf("%d token calls, want 1 (the one refused)", n)
	}
	// A new seed brings it back.
	st, err = b.Seed(ctx, "demo", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()})
	if err != nil || st.State != broker.StateOK || st.Generation != 2 {
		t.Fatalf("re-seed: %+v %v", st, err)
	}
}

func TestSeedRejected(t *testing.T) {
	e := newEnv(t)
	b := e.start(t, "r1", e.conn("demo", broker.GrantRefreshToken), e.conn("s2s", broker.GrantClientCredentials))
	ctx := ctxT(t)
	if _, err := b.Seed(ctx, "demo", broker.Seed{RefreshToken: "not-a-real-token"}); !errors.Is(err, broker.ErrSeedRejected) {
		t.Fatalf("seeding a bogus token: %v", err)
	}
	if st, _ := b.Status("demo"); st.State != broker.StateNeedsSeed {
		t.Fatalf("a refused seed changed the state to %+v", st)
	}
	if _, err := b.Seed(ctx, "s2s", broker.Seed{RefreshToken: "x"}); !errors.Is(err, broker.ErrSeedRejected) {
		t.Fatalf("seeding client_credentials: %v", err)
	}
	if _, err := b.Seed(ctx, "demo", broker.Seed{}); !errors.Is(err, broker.ErrInvalidArgument) {
		t.Fatalf("empty seed: %v", err)
	}
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t)
	b := e.start(t, "r1", e.conn("s2s", broker.GrantClientCredentials))
	ctx := ctxT(t)
	eventually(t, "first client_credentials token", func() bool {
		tok, err := b.GetToken(ctx, "s2s", 0)
		return err == nil && tok.Generation == 1
	})
	nt, err := b.Invalidate(ctx, "s2s", 1, "401")
	if err != nil || nt.Generation != 2 {
		t.Fatalf("Invalidate: %v %v", nt, err)
	}
	if n := e.fake.Stats().TokenCalls["client_credentials"]; n != 2 {
		t.Fatalf("%d client_credentials calls, want 2", n)
	}
}

func TestTransientFailureKeepsServingAndRetries(t *testing.T) {
	e := newEnv(t)
	b, ctx := e.seeded(t)
	e.fake.FailTokenCalls(1, 503)
	st, _ := b.Status("demo")
	e.clock.Advance(st.NextRefreshAt.Sub(e.clock.Now()) + time.Second)
	eventually(t, "degraded state", func() bool {
		st, _ := b.Status("demo")
		return st.State == broker.StateDegraded && st.Generation == 1
	})
	// The still-valid token stays in service.
	if tok, err := b.GetToken(ctx, "demo", 0); err != nil || tok.Generation != 1 {
		t.Fatalf("GetToken while degraded: %v %v", tok, err)
	}
	e.clock.Advance(time.Minute) // past the backoff
	eventually(t, "retry after backoff", func() bool {
		st, _ := b.Status("demo")
		return st.State == broker.StateOK && st.Generation == 2
	})
}

// TestReplicasStorm: three replicas over one etcd, 300 callers spread over
// them report the same generation: the identity provider sees one refresh.
func TestReplicasStorm(t *testing.T) {
	e := newEnv(t)
	cfg := e.conn("demo", broker.GrantRefreshToken)
	bs := []*broker.Broker{e.start(t, "r1", cfg), e.start(t, "r2", cfg), e.start(t, "r3", cfg)}
	ctx := ctxT(t)
	if _, err := bs[1].Seed(ctx, "demo", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, bs...)
	for _, b := range bs {
		eventually(t, "every replica sees generation 1", func() bool {
			tok, err := b.GetToken(ctx, "demo", 0)
			return err == nil && tok.Generation == 1
		})
	}
	e.fake.ResetStats()
	var wg sync.WaitGroup
	bad := make(chan string, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := bs[i%3].Invalidate(ctx, "demo", 1, "401")
			if err != nil || tok.Generation != 2 {
				bad <- "caller got " + tok.String() + " " + errString(err)
			}
		}()
	}
	wg.Wait()
	close(bad)
	for s := range bad {
		t.Fatal(s)
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 1 {
		t.Fatalf("identity provider saw %d refreshes, want 1", n)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestGracefulStepDown: the leader steps down (the first step of a graceful
// shutdown); another replica leads, and the one stepping down still serves
// and still sees new tokens, so calls in flight on it complete.
func TestGracefulStepDown(t *testing.T) {
	e := newEnv(t)
	cfg := e.conn("demo", broker.GrantRefreshToken)
	ctx := ctxT(t)
	r1 := e.start(t, "r1", cfg)
	waitLeader(t, r1)
	r2 := e.start(t, "r2", cfg)
	if _, err := r1.Seed(ctx, "demo", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	if r2.Leading() {
		t.Fatal("r2 leads while r1 does")
	}
	r1.StepDown()
	waitLeader(t, r2)
	if r1.Leading() {
		t.Fatal("r1 still leads after stepping down")
	}
	tok, err := r1.Invalidate(ctx, "demo", 1, "401 during shutdown")
	if err != nil || tok.Generation != 2 {
		t.Fatalf("Invalidate on the replica stepping down: %v %v", tok, err)
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 2 {
		t.Fatalf("%d refresh calls, want 2 (seed and one refresh by the new leader)", n)
	}
	if r2.Leader() != "r2" {
		t.Fatalf("r2 sees leader %q", r2.Leader())
	}
}

// TestClientCredentialsRecovers: a client_credentials connection refused for
// its secret goes to NEEDS_REAUTH; after the secret is fixed (a restart with
// the new config), RefreshNow brings it back. No refresh token can be lost.
func TestClientCredentialsRecovers(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	bad := e.conn("s2s", broker.GrantClientCredentials)
	bad.ClientSecret = "wrong-secret"
	r1, stop := e.startStoppable(t, "r1", bad)
	eventually(t, "NEEDS_REAUTH", func() bool { st, _ := r1.Status("s2s"); return st.State == broker.StateNeedsReauth })
	if _, err := r1.GetToken(ctx, "s2s", 0); !errors.Is(err, broker.ErrNeedsReauth) {
		t.Fatalf("GetToken with a refused secret: %v", err)
	}
	stop()
	e.clock.Advance(time.Second)
	r2 := e.start(t, "r2", e.conn("s2s", broker.GrantClientCredentials))
	waitLeader(t, r2)
	st, err := r2.RefreshNow(ctx, "s2s")
	if err != nil || st.State != broker.StateOK || st.Generation != 1 {
		t.Fatalf("RefreshNow after fixing the secret: %+v %v", st, err)
	}
}

// TestLostKey: records sealed with a key the replica lacks put only their own
// connection in an error state with a clear reason; a client_credentials
// connection simply fetches a new token over its record.
func TestLostKey(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	user, s2s := e.conn("user", broker.GrantRefreshToken), e.conn("s2s", broker.GrantClientCredentials)
	r1, stop := e.startStoppable(t, "r1", user, s2s)
	if _, err := r1.Seed(ctx, "user", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "s2s token", func() bool { _, err := r1.GetToken(ctx, "s2s", 0); return err == nil })
	stop()
	e.keys = seal.Generate("other-key")
	fresh := e.conn("fresh", broker.GrantRefreshToken)
	r2 := e.start(t, "r2", user, s2s, fresh)
	_, err := r2.GetToken(ctx, "user", 0)
	if !errors.Is(err, broker.ErrKeyUnavailable) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("GetToken of a record sealed with a missing key: %v", err)
	}
	if st, _ := r2.Status("user"); st.State != broker.StateDegraded || !strings.Contains(st.Reason, "k1") {
		t.Fatalf("status of the unreadable connection: %+v", st)
	}
	eventually(t, "s2s refetched under the new key", func() bool {
		tok, err := r2.GetToken(ctx, "s2s", 0)
		return err == nil && tok.Generation == 2
	})
	// Other connections keep working: a new seed of another connection.
	if _, err := r2.Seed(ctx, "fresh", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()}); err != nil {
		t.Fatalf("seeding another connection: %v", err)
	}
	// A new login repairs the unreadable one.
	if st, err := r2.Seed(ctx, "user", broker.Seed{RefreshToken: e.fake.IssueRefreshToken()}); err != nil || st.State != broker.StateOK {
		t.Fatalf("re-seeding the unreadable connection: %+v %v", st, err)
	}
}

// TestNoRefreshLoop: fresh tokens reported bad again and again are not
// refreshed faster than the minimum interval, and the state says so
// (DESIGN.md invariant 7).
func TestNoRefreshLoop(t *testing.T) {
	e := newEnv(t)
	b, ctx := e.seeded(t)
	for gen := uint64(1); gen <= 2; gen++ {
		tok, err := b.Invalidate(ctx, "demo", gen, "401")
		if err != nil || tok.Generation != gen+1 {
			t.Fatalf("Invalidate(%d): %v %v", gen, tok, err)
		}
	}
	// The third report in a row within the interval waits for it.
	type result struct {
		tok broker.Token
		err error
	}
	third := make(chan result, 1)
	go func() {
		tok, err := b.Invalidate(ctx, "demo", 3, "401")
		third <- result{tok, err}
	}()
	eventually(t, "the throttle in the state", func() bool {
		st, _ := b.Status("demo")
		return st.State == broker.StateDegraded && strings.Contains(st.Reason, "throttled")
	})
	select {
	case r := <-third:
		t.Fatalf("the third report was answered while throttled: %v %v", r.tok, r.err)
	default:
	}
	if n := e.fake.Stats().TokenCalls["refresh_token"]; n != 3 {
		t.Fatalf("%d refresh calls, want 3 (seed and two refreshes)", n)
	}
	// Once the interval has passed, the pending report is served.
	e.clock.Advance(time.Minute)
	r := <-third
	if r.err != nil || r.tok.Generation != 4 {
		t.Fatalf("Invalidate after the interval: %v %v", r.tok, r.err)
	}
	if st, _ := b.Status("demo"); st.State != broker.StateOK {
		t.Fatalf("state after the throttled refresh: %s", st.State)
	}
}

// TestNeverServedPastExpiry: when refreshes keep failing, the token is served
// while valid, then not at all: UNAVAILABLE with the reason, never an expired
// token (DESIGN.md invariant 4).
func TestNeverServedPastExpiry(t *testing.T) {
	e := newEnv(t)
	b, ctx := e.seeded(t)
	e.fake.FailTokenCalls(1_000_000, 503)
	tok, err := b.GetToken(ctx, "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Just inside the margin: still served.
	e.clock.Advance(tok.ExpiresAt.Sub(e.clock.Now()) - broker.DefaultTiming.ExpiryMargin - time.Second)
	if _, err := b.GetToken(ctx, "demo", 0); err != nil {
		t.Fatalf("GetToken before the margin: %v", err)
	}
	e.clock.Advance(2 * time.Second)
	_, err = b.GetToken(ctx, "demo", 0)
	if !errors.Is(err, broker.ErrTokenUnavailable) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("GetToken within the margin of expiry: %v, want ErrTokenUnavailable naming the expiry", err)
	}
	eventually(t, "the failed refresh in the state", func() bool {
		st, _ := b.Status("demo")
		return st.State == broker.StateDegraded && st.LastResult != "ok"
	})
}
