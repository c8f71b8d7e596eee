package clients_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/clients/clientstest"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

func TestTokenSourceCachesUntilMargin(t *testing.T) {
	clock := newFakeClock()
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", "client-id"),
		clientstest.WithClock(clock.Now), clientstest.WithLifetime(10*time.Minute))
	ts := dial(t, srv).TokenSource("adobe-prod", clients.WithClock(clock.Now), clients.WithMargin(time.Minute))

	if g := ts.Generation(); g != 0 {
		t.Fatalf("Generation before the first token = %d, want 0", g)
	}
	tok, err := ts.Current()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "adobe-prod-access-1" || tok.Generation != 1 || tok.APIKey != "client-id" || tok.TokenType != "Bearer" {
		t.Fatalf("first token = %v (api key %q)", tok, tok.APIKey)
	}
	if !tok.Expiry.Equal(clock.Now().Add(10 * time.Minute)) {
		t.Errorf("Expiry = %v, want %v", tok.Expiry, clock.Now().Add(10*time.Minute))
	}

	// Until the margin, the cache answers.
	clock.Advance(8*time.Minute + 59*time.Second) // 61s left
	srv.Rotate("adobe-prod")                      // the broker has a newer token, but ours is good
	if tok, err = ts.Current(); err != nil || tok.Generation != 1 {
		t.Fatalf("Current inside the lifetime = %v, %v; want the cached generation 1", tok, err)
	}
	if n := srv.Calls("GetToken"); n != 1 {
		t.Fatalf("GetToken calls = %d, want 1", n)
	}

	// Within the margin, the broker is asked again.
	clock.Advance(2 * time.Second) // 59s left
	if tok, err = ts.Current(); err != nil || tok.Generation != 2 {
		t.Fatalf("Current within the margin = %v, %v; want generation 2", tok, err)
	}
	if n := srv.Calls("GetToken"); n != 2 {
		t.Fatalf("GetToken calls = %d, want 2", n)
	}
	if g := ts.Generation(); g != 2 {
		t.Errorf("Generation = %d, want 2", g)
	}

	// A token the broker serves inside the margin is used, and asked for again
	// at each use, until the broker has a newer one.
	clock.Advance(9*time.Minute + 30*time.Second) // 30s left on generation 2
	for i := range 2 {
		if tok, err = ts.Current(); err != nil || tok.Generation != 2 {
			t.Fatalf("Current %d near expiry = %v, %v; want generation 2", i, tok, err)
		}
	}
	if n := srv.Calls("GetToken"); n != 4 {
		t.Fatalf("GetToken calls = %d, want 4", n)
	}
}

func TestTokenSourceOneFetchForManyCallers(t *testing.T) {
	release := make(chan struct{})
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(ctx context.Context, method string) error {
			if method == tokenbrokerv1.TokenBroker_GetToken_FullMethodName {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		}))
	ts := dial(t, srv).TokenSource("adobe-prod")

	const callers = 100
	var started, done sync.WaitGroup
	started.Add(callers)
	errs := make(chan error, callers)
	for range callers {
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			tok, err := ts.Current()
			if err == nil && tok.Generation != 1 {
				err = errors.New("wrong generation " + tok.String())
			}
			errs <- err
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls("GetToken"); n != 1 {
		t.Fatalf("GetToken calls for %d callers = %d, want 1", callers, n)
	}
}

func TestTokenSourceCallerContext(t *testing.T) {
	release := make(chan struct{})
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(ctx context.Context, method string) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}))
	ts := dial(t, srv).TokenSource("adobe-prod")

	// A caller that gives up does not cancel the shared call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.CurrentContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("CurrentContext with a canceled context = %v, want context.Canceled", err)
	}
	close(release)
	tok, err := ts.Current()
	if err != nil || tok.Generation != 1 {
		t.Fatalf("Current = %v, %v", tok, err)
	}
	if n := srv.Calls("GetToken"); n != 1 {
		t.Fatalf("GetToken calls = %d, want 1 (shared by both callers)", n)
	}
}

func TestTokenSourceInvalidate(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""))
	ts := dial(t, srv).TokenSource("adobe-prod")
	ctx := context.Background()

	if _, err := ts.Current(); err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Invalidate(ctx, 1, "401 from /reports")
	if err != nil || tok.Generation != 2 || tok.AccessToken != "adobe-prod-access-2" {
		t.Fatalf("Invalidate(1) = %v, %v; want generation 2", tok, err)
	}
	if g := ts.Generation(); g != 2 {
		t.Errorf("Generation = %d, want 2", g)
	}
	// A second report of generation 1 is answered from the cache.
	if tok, err = ts.Invalidate(ctx, 1, "401 from /reports"); err != nil || tok.Generation != 2 {
		t.Fatalf("second Invalidate(1) = %v, %v; want generation 2", tok, err)
	}
	if n := srv.Calls("Invalidate"); n != 1 {
		t.Fatalf("Invalidate calls = %d, want 1", n)
	}
	// The cache now serves generation 2.
	if tok, err = ts.Current(); err != nil || tok.Generation != 2 {
		t.Fatalf("Current = %v, %v; want generation 2", tok, err)
	}
	if n := srv.Calls("GetToken"); n != 1 {
		t.Fatalf("GetToken calls = %d, want 1", n)
	}
}

func TestTokenSourceConcurrentInvalidate(t *testing.T) {
	release := make(chan struct{})
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(ctx context.Context, method string) error {
			if method == tokenbrokerv1.TokenBroker_Invalidate_FullMethodName {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		}))
	ts := dial(t, srv).TokenSource("adobe-prod")
	if _, err := ts.Current(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			tok, err := ts.Invalidate(context.Background(), 1, "401")
			if err == nil && tok.Generation != 2 {
				err = errors.New("wrong generation " + tok.String())
			}
			errs <- err
		})
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Reports that came while the call was in flight shared it; later ones
	// were answered by the cache. Either way, the broker heard once.
	if n := srv.Calls("Invalidate"); n != 1 {
		t.Fatalf("Invalidate calls = %d, want 1", n)
	}
}

func TestTokenSourceInvalidateFailureDropsCache(t *testing.T) {
	fail := true
	var mu sync.Mutex
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(_ context.Context, method string) error {
			mu.Lock()
			defer mu.Unlock()
			if method == tokenbrokerv1.TokenBroker_Invalidate_FullMethodName && fail {
				return clientstest.Error(codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_REAUTH, "invalid_grant")
			}
			return nil
		}))
	ts := dial(t, srv).TokenSource("adobe-prod")
	if _, err := ts.Current(); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Invalidate(context.Background(), 1, "401"); !errors.Is(err, clients.ErrNeedsReauth) {
		t.Fatalf("Invalidate = %v, want ErrNeedsReauth", err)
	}
	srv.Rotate("adobe-prod") // an operator re-seeded the connection
	tok, err := ts.Current()
	if err != nil || tok.Generation != 2 {
		t.Fatalf("Current after a failed Invalidate = %v, %v; want a fresh fetch of generation 2", tok, err)
	}
	if n := srv.Calls("GetToken"); n != 2 {
		t.Fatalf("GetToken calls = %d, want 2", n)
	}
}

func TestTokenSourceOAuth2(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", "client-id"))
	ts := clients.NewTokenSource(dial(t, srv), "adobe-prod")
	if ts.Connection() != "adobe-prod" {
		t.Errorf("Connection = %q", ts.Connection())
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "adobe-prod-access-1" || tok.Type() != "Bearer" || !tok.Valid() {
		t.Fatalf("oauth2 token: type %q, valid %v", tok.Type(), tok.Valid())
	}
	if g, ok := tok.Extra("generation").(uint64); !ok || g != 1 {
		t.Errorf("Extra(generation) = %v", tok.Extra("generation"))
	}
	if k, ok := tok.Extra("api_key").(string); !ok || k != "client-id" {
		t.Errorf("Extra(api_key) = %v", tok.Extra("api_key"))
	}
}

func TestTokenSourceError(t *testing.T) {
	srv := startBroker(t)
	ts := dial(t, srv).TokenSource("nope")
	if _, err := ts.Current(); !errors.Is(err, clients.ErrNotFound) {
		t.Fatalf("Current of an unknown connection = %v, want ErrNotFound", err)
	}
	if _, err := ts.Token(); !errors.Is(err, clients.ErrNotFound) {
		t.Fatalf("Token of an unknown connection = %v, want ErrNotFound", err)
	}
}

func TestTokenSourceServesValidTokenWhenBrokerFails(t *testing.T) {
	clock := newFakeClock()
	var mu sync.Mutex
	failing := false
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		clientstest.WithClock(clock.Now), clientstest.WithLifetime(10*time.Minute),
		interceptor(func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return clientstest.Error(codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_REAUTH, "invalid_grant")
			}
			return nil
		}))
	ts := dial(t, srv).TokenSource("adobe-prod", clients.WithClock(clock.Now))
	if _, err := ts.Current(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	failing = true
	mu.Unlock()

	clock.Advance(9*time.Minute + 30*time.Second) // inside the margin, not expired
	if tok, err := ts.Current(); err != nil || tok.Generation != 1 {
		t.Fatalf("Current while the broker fails = %v, %v; want the still-valid generation 1", tok, err)
	}
	clock.Advance(30 * time.Second) // expired
	if _, err := ts.Current(); !errors.Is(err, clients.ErrNeedsReauth) {
		t.Fatalf("Current after expiry = %v, want ErrNeedsReauth", err)
	}
}
