package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
	"google.golang.org/grpc/codes"
)

// leaky wraps the real broker: GetToken of "boom" panics, and of "oops"
// fails with an unknown error, both carrying every secret known so far.
type leaky struct {
	server.Broker
	secrets *secretSet
}

func (l leaky) GetToken(ctx context.Context, name string, minValidity time.Duration) (broker.Token, error) {
	switch name {
	case "boom":
		panic("leaking " + strings.Join(l.secrets.list(), " "))
	case "oops":
		return broker.Token{}, fmt.Errorf("unexpected failure holding %s", strings.Join(l.secrets.list(), " "))
	}
	return l.Broker.GetToken(ctx, name, minValidity)
}

// Modes of echoIdP.
const (
	echoOK        = iota
	echoTransient // 503 server_error
	echoPermanent // 400 invalid_grant
)

// echoIdP is a careless OAuth 2.0 token endpoint: its errors quote the
// refresh token, the client secret and the Authorization header it got.
type echoIdP struct {
	secrets *secretSet
	mode    atomic.Int32
	n       atomic.Int64
}

func (e *echoIdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	rt := r.PostForm.Get("refresh_token")
	secret := r.PostForm.Get("client_secret")
	if _, pw, ok := r.BasicAuth(); ok {
		secret = pw
	}
	desc := fmt.Sprintf("refresh token %s is bad; client secret %s; authorization %q", rt, secret, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	var body map[string]any
	switch e.mode.Load() {
	case echoOK:
		n := e.n.Add(1)
		at, nrt := fmt.Sprintf("eat_%d_%s", n, rand.Text()), fmt.Sprintf("ert_%d_%s", n, rand.Text())
		e.secrets.add(at, nrt)
		body = map[string]any{"access_token": at, "refresh_token": nrt, "token_type": "Bearer", "expires_in": 3600}
	case echoTransient:
		w.WriteHeader(http.StatusServiceUnavailable)
		body = map[string]any{"error": "server_error", "error_description": desc}
	default:
		w.WriteHeader(http.StatusBadRequest)
		body = map[string]any{"error": "invalid_grant", "error_description": desc}
	}
	_ = json.NewEncoder(w).Encode(body)
}

// TestRedaction runs the demo scenario, a handler panic and an identity
// provider that echoes secrets, capturing every log line and every status
// message and admin response: no token and no client secret may show.
func TestRedaction(t *testing.T) {
	logs := &textLog{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secrets := &secretSet{m: map[string]bool{}}

	idp := &echoIdP{secrets: secrets}
	idpSrv := httptest.NewServer(idp)
	t.Cleanup(idpSrv.Close)
	const echoID, echoSecret = "echo-client", "echo-client-secret-7b2d90"
	secrets.add(echoSecret, base64.StdEncoding.EncodeToString([]byte(echoID+":"+echoSecret)))

	h := newHarness(t, setup{
		policy:  server.Policy{Disabled: true},
		logger:  logger,
		secrets: secrets,
		wrap:    func(b server.Broker) server.Broker { return leaky{Broker: b, secrets: secrets} },
		extra: []broker.ConnectionConfig{{
			Name: "echo", Provider: broker.ProviderOAuth2, Grant: broker.GrantRefreshToken,
			TokenURL: idpSrv.URL + "/token", ClientID: echoID, ClientSecret: echoSecret,
		}},
	})
	ctx := ctxT(t)

	acceptance(t, h)

	// A handler panic comes back as a bare INTERNAL.
	_, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "boom"})
	st := wantStatus(t, "GetToken that panics", err, codes.Internal, "ERROR_REASON_INTERNAL")
	if st.Message() != "internal error" {
		t.Fatalf("panic message %q, want \"internal error\"", st.Message())
	}
	_, err = h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "oops"})
	st = wantStatus(t, "GetToken with an unknown error", err, codes.Internal, "ERROR_REASON_INTERNAL")
	if st.Message() != "internal error" {
		t.Fatalf("unknown error message %q, want \"internal error\"", st.Message())
	}
	// The server still serves after the panic.
	if _, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"}); err != nil {
		t.Fatalf("GetToken after a panic: %v", err)
	}

	// The echoing identity provider: seed, then a transient failure, then a
	// permanent one, then a refused seed; each quotes the secrets.
	rt := "ert_seed_" + rand.Text()
	secrets.add(rt)
	seeded, err := h.admin.SeedToken(ctx, &pb.SeedTokenRequest{Connection: "echo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: rt}})
	if err != nil || seeded.GetConnection().GetGeneration() != 1 {
		t.Fatalf("SeedToken echo: %v %v", seeded, err)
	}
	tok, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "echo"})
	if err != nil || tok.GetGeneration() != 1 {
		t.Fatalf("GetToken echo: %v", err)
	}
	secrets.add(tok.GetAccessToken())

	idp.mode.Store(echoTransient)
	invCtx, cancelInv := context.WithCancel(ctx)
	invDone := make(chan error, 1)
	go func() {
		_, err := h.tb.Invalidate(invCtx, &pb.InvalidateRequest{Connection: "echo", Generation: 1, Reason: "401"})
		invDone <- err
	}()
	eventually(t, "echo to be degraded", func() bool {
		c, err := h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "echo"})
		return err == nil && c.GetState() == pb.ConnectionState_CONNECTION_STATE_DEGRADED && c.GetLastRefreshResult() == "server_error"
	})
	c, err := h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "echo"})
	if err != nil || !strings.Contains(c.GetLastErrorReason(), "[redacted]") {
		t.Fatalf("degraded reason %q does not show the redaction (%v)", c.GetLastErrorReason(), err)
	}
	// The still-valid token is served meanwhile.
	if tok, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "echo"}); err != nil || tok.GetGeneration() != 1 {
		t.Fatalf("GetToken while degraded: %v", err)
	}
	cancelInv()
	if err := <-invDone; err == nil {
		t.Fatal("Invalidate returned a token while the identity provider failed")
	}

	// The leader retries the pending demand after its backoff and gets the
	// permanent refusal.
	idp.mode.Store(echoPermanent)
	eventually(t, "echo to need reauth", func() bool {
		c, err := h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "echo"})
		return err == nil && c.GetState() == pb.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH
	})
	c, err = h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "echo"})
	if err != nil || !strings.Contains(c.GetLastErrorReason(), "invalid_grant") || !strings.Contains(c.GetLastErrorReason(), "[redacted]") {
		t.Fatalf("reauth reason %q (%v)", c.GetLastErrorReason(), err)
	}
	_, err = h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "echo", Generation: 1})
	wantStatus(t, "Invalidate echo in NEEDS_REAUTH", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_REAUTH")
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "echo", Path: "/x"})
	if err == nil {
		t.Fatal("CallAnalytics of a connection without an API base URL succeeded")
	}
	rt2 := "ert_reseed_" + rand.Text()
	secrets.add(rt2)
	_, err = h.admin.SeedToken(ctx, &pb.SeedTokenRequest{Connection: "echo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: rt2}})
	st = wantStatus(t, "SeedToken refused by the echoing provider", err, codes.FailedPrecondition, "ERROR_REASON_SEED_REJECTED")
	if !strings.Contains(st.Message(), "invalid_grant") {
		t.Fatalf("seed refusal %q does not say why", st.Message())
	}

	// Nothing leaked.
	all := secrets.list()
	if len(all) < 10 {
		t.Fatalf("only %d secrets recorded: the capture is broken", len(all))
	}
	out, seen := logs.String(), h.seen.String()
	// The whole etcd keyspace after the scenario: sealed, no token or secret.
	dump, err := etcd.Client.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var keyspace strings.Builder
	for _, kv := range dump.Kvs {
		keyspace.Write(kv.Key)
		keyspace.WriteByte(' ')
		keyspace.Write(kv.Value)
		keyspace.WriteByte('\n')
	}
	if !strings.Contains(keyspace.String(), `"kid"`) {
		t.Fatal("the keyspace dump holds no sealed record: the dump is broken")
	}
	for _, s := range all {
		if strings.Contains(keyspace.String(), s) {
			t.Errorf("the etcd keyspace holds %.12s… in plaintext", s)
		}
	}
	for _, want := range []string{`"msg":"panic in handler"`, `"msg":"token refreshed"`, `"msg":"finished call"`, "[redacted]", `"msg":"seed refused"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("the logs lack %s: the capture is broken", want)
		}
	}
	for _, want := range []string{"internal error", "[redacted]", "invalid_grant"} {
		if !strings.Contains(seen, want) {
			t.Fatalf("the statuses seen lack %s: the capture is broken", want)
		}
	}
	var leaks []error
	for _, s := range all {
		if strings.Contains(out, s) {
			leaks = append(leaks, fmt.Errorf("logs hold %.12s… (%s)", s, around(out, s)))
		}
		if strings.Contains(seen, s) {
			leaks = append(leaks, fmt.Errorf("statuses hold %.12s… (%s)", s, around(seen, s)))
		}
	}
	if err := errors.Join(leaks...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d secrets checked against %d bytes of logs and %d bytes of statuses", len(all), len(out), len(seen))
}

// around shows what precedes s in text, without s.
func around(text, s string) string {
	i := strings.Index(text, s)
	start := max(0, i-120)
	return strings.ReplaceAll(text[start:i], "\n", " ") + "<SECRET>"
}
