package clients_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/clients/clientstest"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

func TestGetToken(t *testing.T) {
	clock := newFakeClock()
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", "client-id"),
		clientstest.WithClock(clock.Now), clientstest.WithLifetime(time.Hour))
	c := dial(t, srv)
	ctx := context.Background()

	tok, err := c.GetToken(ctx, "adobe-prod", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := clients.Token{
		Connection: "adobe-prod", AccessToken: "adobe-prod-access-1", TokenType: "Bearer",
		Expiry: clock.Now().Add(time.Hour), Generation: 1, APIKey: "client-id",
	}
	if *tok != want {
		t.Fatalf("GetToken = %#v, want %#v", *tok, want)
	}
	// min_validity reaches the broker.
	clock.Advance(50 * time.Minute)
	if tok, err = c.GetToken(ctx, "adobe-prod", 30*time.Minute); err != nil || tok.Generation != 2 {
		t.Fatalf("GetToken with min_validity = %v, %v; want generation 2", tok, err)
	}
	if _, err = c.GetToken(ctx, "adobe-prod", 2*time.Hour); !errors.Is(err, clients.ErrMinValidityUnsatisfiable) {
		t.Fatalf("GetToken with min_validity 2h = %v, want ErrMinValidityUnsatisfiable", err)
	}

	tok, err = c.Invalidate(ctx, "adobe-prod", 2, "401 from /reports")
	if err != nil || tok.Generation != 3 {
		t.Fatalf("Invalidate(2) = %v, %v; want generation 3", tok, err)
	}
	if _, err = c.Invalidate(ctx, "adobe-prod", 7, "401"); !errors.Is(err, clients.ErrGenerationAhead) {
		t.Fatalf("Invalidate(7) = %v, want ErrGenerationAhead", err)
	}
}

// staleBroker breaks the broker's contract: Invalidate(g) answers with g.
type staleBroker struct {
	tokenbrokerv1.UnimplementedTokenBrokerServer
}

func (staleBroker) Invalidate(_ context.Context, req *tokenbrokerv1.InvalidateRequest) (*tokenbrokerv1.InvalidateResponse, error) {
	return &tokenbrokerv1.InvalidateResponse{Token: &tokenbrokerv1.Token{
		Connection: req.GetConnection(), AccessToken: "old", Generation: req.GetGeneration(),
	}}, nil
}

func TestInvalidateWantsNewerGeneration(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	tokenbrokerv1.RegisterTokenBrokerServer(s, staleBroker{})
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-served })

	c, err := clients.Dial(lis.Addr().String(), clients.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tok, err := c.Invalidate(context.Background(), "adobe-prod", 4, "401"); err == nil || !strings.Contains(err.Error(), "not a newer one") {
		t.Fatalf("Invalidate answered with the same generation = %v, %v; want an error", tok, err)
	}
}

func TestDialOptions(t *testing.T) {
	tests := []struct {
		name   string
		target string
		opts   []clients.Option
		err    string // "" when Dial must succeed
	}{
		{"empty target", "", nil, "empty target"},
		{"insecure with TLS", "localhost:1", []clients.Option{clients.WithInsecure(), clients.WithTLS(&tls.Config{})}, "cannot be combined"},
		{"insecure with TLS files", "localhost:1", []clients.Option{clients.WithInsecure(), clients.WithTLSFiles("", "", "")}, "cannot be combined"},
		{"API key in plaintext to the network", "broker.internal:8443", []clients.Option{clients.WithInsecure(), clients.WithAPIKey("k")}, "refusing to send the API key"},
		{"API key in plaintext to loopback", "127.0.0.1:8443", []clients.Option{clients.WithInsecure(), clients.WithAPIKey("k")}, ""},
		{"API key over TLS", "broker.internal:8443", []clients.Option{clients.WithAPIKey("k")}, ""},
		{"insecure to the network", "broker.internal:8443", []clients.Option{clients.WithInsecure()}, ""},
		{"certificate without key", "broker.internal:8443", []clients.Option{clients.WithTLSFiles("", "cert.pem", "")}, "both a certificate file and a key file"},
		{"missing CA file", "broker.internal:8443", []clients.Option{clients.WithTLSFiles("/nonexistent/ca.pem", "", "")}, "reading CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := clients.Dial(tt.target, tt.opts...)
			if err == nil {
				c.Close()
			}
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Dial = %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Dial = %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

func TestAPIKeyReachesBroker(t *testing.T) {
	var rec metadataRecorder
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""), rec.option())
	c := dial(t, srv, clients.WithAPIKey("s3cret"), clients.WithUserAgent("reports/1.0"))
	if _, err := c.GetToken(context.Background(), "adobe-prod", 0); err != nil {
		t.Fatal(err)
	}
	if got := rec.get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("authorization = %q", got)
	}
	if got := rec.get("user-agent"); len(got) != 1 || !strings.HasPrefix(got[0], "reports/1.0") {
		t.Errorf("user-agent = %q", got)
	}
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name   string
		mutual bool
		opts   []clients.Option
	}{
		{"WithTLS", false, []clients.Option{clients.WithTLS(&tls.Config{RootCAs: pki.pool})}},
		{"WithTLSFiles", false, []clients.Option{clients.WithTLSFiles(pki.caFile, "", "")}},
		{"mutual TLS", true, []clients.Option{clients.WithTLSFiles(pki.caFile, pki.clientCert, pki.clientKey)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec metadataRecorder
			srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""), rec.option(),
				clientstest.WithServerOptions(grpc.Creds(credentials.NewTLS(pki.serverTLS(t, tt.mutual)))))
			c, err := clients.Dial(srv.Addr(), append(tt.opts, clients.WithAPIKey("s3cret"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.GetToken(context.Background(), "adobe-prod", 0); err != nil {
				t.Fatal(err)
			}
			if got := rec.get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
				t.Errorf("authorization = %q", got)
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
			clientstest.WithServerOptions(grpc.Creds(credentials.NewTLS(pki.serverTLS(t, true)))))
		c, err := clients.Dial(srv.Addr(), clients.WithTLSFiles(pki.caFile, "", ""), clients.WithDialOptions(grpc.WithDisableRetry()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.GetToken(context.Background(), "adobe-prod", 0); !errors.Is(err, clients.ErrUnavailable) {
			t.Fatalf("GetToken without a client certificate = %v, want ErrUnavailable", err)
		}
	})
}

// counter counts the attempts of each method, and fails the first fails of
// those in failing.
type counter struct {
	mu       sync.Mutex
	attempts map[string]int
}

func (c *counter) option(fails int, failing ...string) clientstest.Option {
	c.attempts = make(map[string]int)
	return interceptor(func(_ context.Context, method string) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.attempts[method]++
		for _, m := range failing {
			if m == method && c.attempts[method] <= fails {
				return clientstest.Error(codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_NOT_READY, "loading")
			}
		}
		return nil
	})
}

func (c *counter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempts[method]
}

func TestRetryPolicy(t *testing.T) {
	var cnt counter
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""), cnt.option(2,
		tokenbrokerv1.TokenBroker_GetToken_FullMethodName,
		tokenbrokerv1.TokenBroker_Invalidate_FullMethodName,
		tokenbrokerv1.TokenBroker_CallAnalytics_FullMethodName))
	c := dial(t, srv)
	ctx := context.Background()

	tok, err := c.GetToken(ctx, "adobe-prod", 0)
	if err != nil || tok.Generation != 1 {
		t.Fatalf("GetToken after two UNAVAILABLE = %v, %v", tok, err)
	}
	if n := cnt.get(tokenbrokerv1.TokenBroker_GetToken_FullMethodName); n != 3 {
		t.Errorf("GetToken attempts = %d, want 3", n)
	}
	if tok, err = c.Invalidate(ctx, "adobe-prod", 1, "401"); err != nil || tok.Generation != 2 {
		t.Fatalf("Invalidate after two UNAVAILABLE = %v, %v", tok, err)
	}
	if n := cnt.get(tokenbrokerv1.TokenBroker_Invalidate_FullMethodName); n != 3 {
		t.Errorf("Invalidate attempts = %d, want 3", n)
	}
	// CallAnalytics may have acted upstream: never retried.
	_, err = c.TokenBroker().CallAnalytics(ctx, &tokenbrokerv1.CallAnalyticsRequest{Connection: "adobe-prod"})
	if status.Code(err) != codes.Unavailable || clients.Reason(err) != "ERROR_REASON_NOT_READY" {
		t.Fatalf("CallAnalytics = %v, want the first UNAVAILABLE", err)
	}
	if n := cnt.get(tokenbrokerv1.TokenBroker_CallAnalytics_FullMethodName); n != 1 {
		t.Errorf("CallAnalytics attempts = %d, want 1", n)
	}
}

func TestRetryGivesUp(t *testing.T) {
	var cnt counter
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		cnt.option(100, tokenbrokerv1.TokenBroker_GetToken_FullMethodName))
	c := dial(t, srv)
	_, err := c.GetToken(context.Background(), "adobe-prod", 0)
	if !errors.Is(err, clients.ErrUnavailable) || clients.Reason(err) != "ERROR_REASON_NOT_READY" {
		t.Fatalf("GetToken = %v, want ERROR_REASON_NOT_READY", err)
	}
	if n := cnt.get(tokenbrokerv1.TokenBroker_GetToken_FullMethodName); n != 4 {
		t.Errorf("GetToken attempts = %d, want 4", n)
	}
}
