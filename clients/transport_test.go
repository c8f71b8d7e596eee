package clients_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/clients/clientstest"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// upstream is an API that accepts the tokens it has not revoked, records what
// it saw, and answers 200 with the request body echoed.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	revoked map[string]bool
	status  int // when not 0, the answer to every authenticated request
	seen    []seenRequest
}

type seenRequest struct {
	auth, apiKey, body string
	status             int
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{revoked: make(map[string]bool)}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	defer u.mu.Unlock()
	code := http.StatusOK
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || u.revoked[token]:
		code = http.StatusUnauthorized
	case u.status != 0:
		code = u.status
	}
	u.seen = append(u.seen, seenRequest{r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), string(body), code})
	w.WriteHeader(code)
	if code == http.StatusUnauthorized {
		io.WriteString(w, `{"error_code":"401013","message":"Oauth token is not valid"}`)
		return
	}
	w.Write(body)
}

func (u *upstream) revoke(token string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.revoked[token] = true
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// client returns an http.Client whose Transport uses ts and the upstream's
// own transport.
func (u *upstream) client(ts *clients.TokenSource) *http.Client {
	return &http.Client{Transport: clients.NewTransport(ts, u.Server.Client().Transport)}
}

func do(t *testing.T, hc *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestTransport(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", "client-id"))
	up := newUpstream(t)
	hc := up.client(dial(t, srv).TokenSource("adobe-prod"))

	req, err := http.NewRequest(http.MethodGet, up.URL+"/discovery/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if code, _ := do(t, hc, req); code != http.StatusOK {
		t.Fatalf("status = %d, want 200", code)
	}
	seen := up.requests()
	if len(seen) != 1 || seen[0].auth != "Bearer adobe-prod-access-1" || seen[0].apiKey != "client-id" {
		t.Fatalf("upstream saw %+v", seen)
	}
	if len(req.Header) != 1 || req.Header.Get("Authorization") != "" {
		t.Errorf("the caller's request was modified: %v", req.Header)
	}
}

// The acceptance scenario: the upstream revokes the token; the request gets
// exactly one 401, the broker one Invalidate, and the retry succeeds.
func TestTransportRenewsRevokedToken(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", "client-id"))
	up := newUpstream(t)
	ts := dial(t, srv).TokenSource("adobe-prod")
	hc := up.client(ts)

	newReq := func() *http.Request {
		req, err := http.NewRequest(http.MethodPost, up.URL+"/api/acme/reports", strings.NewReader(`{"rsid":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	if code, _ := do(t, hc, newReq()); code != http.StatusOK {
		t.Fatalf("first request: status %d", code)
	}
	up.revoke("adobe-prod-access-1")

	code, body := do(t, hc, newReq())
	if code != http.StatusOK || body != `{"rsid":"x"}` {
		t.Fatalf("request with a revoked token: %d %q, want 200 and the body echoed", code, body)
	}
	seen := up.requests()[1:]
	var unauthorized int
	for _, s := range seen {
		if s.status == http.StatusUnauthorized {
			unauthorized++
		}
	}
	if len(seen) != 2 || unauthorized != 1 {
		t.Fatalf("upstream saw %+v; want one 401 and one retry", seen)
	}
	if seen[1].auth != "Bearer adobe-prod-access-2" || seen[1].body != `{"rsid":"x"}` || seen[1].apiKey != "client-id" {
		t.Errorf("retry = %+v; want generation 2 and the same body", seen[1])
	}
	if n := srv.Calls("Invalidate"); n != 1 {
		t.Errorf("Invalidate calls = %d, want 1", n)
	}
	if g := ts.Generation(); g != 2 {
		t.Errorf("Generation = %d, want 2", g)
	}
}

func TestTransportDoesNotReplayUnreplayableBody(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""))
	up := newUpstream(t)
	hc := up.client(dial(t, srv).TokenSource("adobe-prod"))
	up.revoke("adobe-prod-access-1")

	req, err := http.NewRequest(http.MethodPost, up.URL+"/api/acme/reports", io.NopCloser(strings.NewReader("stream")))
	if err != nil {
		t.Fatal(err)
	}
	if req.GetBody != nil {
		t.Fatal("test needs a request without GetBody")
	}
	if code, body := do(t, hc, req); code != http.StatusUnauthorized || !strings.Contains(body, "401013") {
		t.Fatalf("status %d %q, want the upstream's 401", code, body)
	}
	if n := len(up.requests()); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}
	// The rejected token was still reported, so the next request is good.
	if n := srv.Calls("Invalidate"); n != 1 {
		t.Fatalf("Invalidate calls = %d, want 1", n)
	}
	req, err = http.NewRequest(http.MethodGet, up.URL+"/discovery/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, hc, req); code != http.StatusOK {
		t.Fatalf("next request: status %d, want 200", code)
	}
	if seen := up.requests(); len(seen) != 2 || seen[1].auth != "Bearer adobe-prod-access-2" {
		t.Fatalf("upstream saw %+v", seen)
	}
}

func TestTransportDoesNotRetry403(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""))
	up := newUpstream(t)
	up.mu.Lock()
	up.status = http.StatusForbidden
	up.mu.Unlock()
	hc := up.client(dial(t, srv).TokenSource("adobe-prod"))

	req, err := http.NewRequest(http.MethodGet, up.URL+"/api/acme/reports", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, hc, req); code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", code)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
	if n := srv.Calls("Invalidate"); n != 0 {
		t.Errorf("Invalidate calls = %d, want 0", n)
	}
}

func TestTransportRetriesOnce(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""))
	up := newUpstream(t)
	hc := up.client(dial(t, srv).TokenSource("adobe-prod"))
	up.revoke("adobe-prod-access-1")
	up.revoke("adobe-prod-access-2")

	req, err := http.NewRequest(http.MethodGet, up.URL+"/discovery/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := do(t, hc, req); code != http.StatusUnauthorized {
		t.Fatalf("status %d, want the second 401", code)
	}
	if n := len(up.requests()); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}
	if n := srv.Calls("Invalidate"); n != 1 {
		t.Errorf("Invalidate calls = %d, want 1", n)
	}
}

func TestTransportInvalidateFails(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(_ context.Context, method string) error {
			if method == tokenbrokerv1.TokenBroker_Invalidate_FullMethodName {
				return clientstest.Error(codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_REAUTH, "invalid_grant")
			}
			return nil
		}))
	up := newUpstream(t)
	hc := up.client(dial(t, srv).TokenSource("adobe-prod"))
	up.revoke("adobe-prod-access-1")

	req, err := http.NewRequest(http.MethodGet, up.URL+"/discovery/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, clients.ErrNeedsReauth) || clients.Reason(err) != "ERROR_REASON_NEEDS_REAUTH" {
		t.Fatalf("error = %v, want ErrNeedsReauth", err)
	}
}

func TestTransportTokenError(t *testing.T) {
	srv := startBroker(t)
	up := newUpstream(t)
	hc := up.client(dial(t, srv).TokenSource("nope"))
	req, err := http.NewRequest(http.MethodGet, up.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("no error")
	}
	if !errors.Is(err, clients.ErrNotFound) {
		t.Fatalf("error = %v, want ErrNotFound", err)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want 0", n)
	}
}
