package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// setup configures a harness.
type setup struct {
	policy server.Policy
	// logger goes to both the broker and the server; nil discards.
	logger *slog.Logger
	// wrap, if set, wraps the real broker before server.New sees it.
	wrap func(server.Broker) server.Broker
	// serverOpts are server.Options.ServerOptions (transport credentials).
	serverOpts []grpc.ServerOption
	// dial are the harness client's transport credentials (nil: insecure).
	dial credentials.TransportCredentials
	// extra connections besides "demo" and "unseeded".
	extra []broker.ConnectionConfig
	// secret is the fake's client secret (default: a distinctive one).
	secret string
	// secrets collects the secrets to look for (nil: a new set).
	secrets *secretSet
}

// harness is a fake Adobe, one broker replica on the shared etcd, and the
// gRPC server in front of it on loopback TCP.
type harness struct {
	fake    *fakeadobe.Server
	fakeURL string
	b       *broker.Broker
	srv     *server.Server
	addr    string
	conn    *grpc.ClientConn
	tb      pb.TokenBrokerClient
	admin   pb.AdminClient
	health  healthpb.HealthClient
	secrets *secretSet
	// seen collects every status message and every admin response the
	// harness client received, as text, for the redaction checks.
	seen *textLog
}

// secretSet collects the secrets that must never show in logs or statuses.
type secretSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *secretSet) add(vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		if v != "" {
			s.m[v] = true
		}
	}
}

func (s *secretSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.m))
	for v := range s.m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// textLog is a concurrency-safe append-only buffer.
type textLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *textLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *textLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(s)
	l.buf.WriteByte('\n')
}

func (l *textLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// recordTokens wraps a token endpoint and adds every access_token and
// refresh_token it hands out to secrets.
func recordTokens(h http.Handler, secrets *secretSet) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/ims/token/") {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var body map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &body) == nil {
			for _, k := range []string{"access_token", "refresh_token"} {
				if v, ok := body[k].(string); ok {
					secrets.add(v)
				}
			}
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

const clientSecretDefault = "tb-test-client-secret-9f3a1c"

func newHarness(t *testing.T, s setup) *harness {
	t.Helper()
	if s.secret == "" {
		s.secret = clientSecretDefault
	}
	logger := s.logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &harness{secrets: s.secrets, seen: &textLog{}}
	if h.secrets == nil {
		h.secrets = &secretSet{m: map[string]bool{}}
	}
	h.secrets.add(s.secret)
	h.fake = fakeadobe.New(fakeadobe.Options{ClientSecret: s.secret})
	hs := httptest.NewServer(recordTokens(h.fake, h.secrets))
	t.Cleanup(hs.Close)
	h.fakeURL = hs.URL

	conns := append([]broker.ConnectionConfig{h.adobeConn("demo"), h.adobeConn("unseeded")}, s.extra...)
	cli, err := etcd.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Options{
		Config: broker.Config{Connections: conns, Timing: broker.Timing{
			SessionTTL: 2 * time.Second,
			// Demand refreshes come in quick succession here; no throttle.
			MinDemandInterval: time.Nanosecond,
		}},
		Client:    cli,
		Prefix:    newPrefix(),
		Keyring:   seal.Generate("k1"),
		ReplicaID: "r1",
		Address:   "127.0.0.1:0",
		Version:   "test",
		Logger:    logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; cli.Close() })
	select {
	case <-b.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("broker cache not synced")
	}

	var sb server.Broker = b
	if s.wrap != nil {
		sb = s.wrap(b)
	}
	h.srv = server.New(server.Options{Broker: sb, Policy: s.policy, Logger: logger, ServerOptions: s.serverOpts})
	h.srv.SetServing(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() { _ = h.srv.GRPC.Serve(lis); close(served) }()
	t.Cleanup(func() { h.srv.GRPC.Stop(); <-served })

	h.conn = h.dial(t, s.dial)
	h.tb = pb.NewTokenBrokerClient(h.conn)
	h.admin = pb.NewAdminClient(h.conn)
	h.health = healthpb.NewHealthClient(h.conn)
	return h
}

// dial returns a client connection to the harness's server; creds nil means
// insecure. Every status message and admin response it sees goes to h.seen.
func (h *harness) dial(t *testing.T, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(creds), grpc.WithChainUnaryInterceptor(h.observe))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (h *harness) observe(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		st := status.Convert(err)
		h.seen.add(st.Message())
		for _, d := range st.Details() {
			if m, ok := d.(proto.Message); ok {
				h.seen.add(protojson.Format(m))
			}
		}
		return err
	}
	switch r := reply.(type) {
	case *pb.Connection, *pb.SeedTokenResponse, *pb.RefreshNowResponse, *pb.ListConnectionsResponse, *pb.ListReplicasResponse:
		h.seen.add(protojson.Format(r.(proto.Message)))
	}
	return nil
}

func (h *harness) adobeConn(name string) broker.ConnectionConfig {
	return broker.ConnectionConfig{
		Name: name, Provider: broker.ProviderAdobe, Grant: broker.GrantRefreshToken, IMSURL: h.fakeURL,
		ClientID: h.fake.ClientID(), ClientSecret: h.fake.ClientSecret(), APIBaseURL: h.fakeURL,
		Scopes: []string{"openid", "AdobeID", "offline_access"},
	}
}

// login is a user's login at the fake: a fresh refresh token.
func (h *harness) login() string {
	rt := h.fake.IssueRefreshToken()
	h.secrets.add(rt)
	return rt
}

func (h *harness) refreshCalls() int { return h.fake.Stats().TokenCalls["refresh_token"] }

func (h *harness) waitLeading(t *testing.T) {
	t.Helper()
	eventually(t, "the replica to lead", h.b.Leading)
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

// withKey adds an API key to ctx.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

// wantStatus checks that err is a status of code whose ErrorInfo has domain
// tokenbroker.v1 and one of reasons, and returns it.
func wantStatus(t *testing.T, what string, err error, code codes.Code, reasons ...string) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %s %v", what, code, reasons)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: %v is not a gRPC status", what, err)
	}
	if st.Code() != code {
		t.Fatalf("%s: code %s (%q), want %s", what, st.Code(), st.Message(), code)
	}
	if len(reasons) == 0 {
		return st
	}
	info := errorInfo(st)
	if info == nil {
		t.Fatalf("%s: %s %q carries no ErrorInfo", what, st.Code(), st.Message())
	}
	if info.GetDomain() != server.Domain {
		t.Fatalf("%s: ErrorInfo domain %q, want %q", what, info.GetDomain(), server.Domain)
	}
	if !slices.Contains(reasons, info.GetReason()) {
		t.Fatalf("%s: reason %s (%q), want one of %v", what, info.GetReason(), st.Message(), reasons)
	}
	return st
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

const suitesPath = "/api/" + fakeadobe.DefaultCompanyID + "/reportsuites/collections/suites"

// TestDemoAcceptance is the acceptance of the demo mode (authentication off)
// over a real transport, a real etcd and the fake Adobe.
func TestDemoAcceptance(t *testing.T) {
	h := newHarness(t, setup{policy: server.Policy{Disabled: true}})
	acceptance(t, h)
}

// acceptance runs the demo scenario against h (policy disabled).
func acceptance(t *testing.T, h *harness) {
	ctx := ctxT(t)
	if h.fake.CompanyID() != fakeadobe.DefaultCompanyID {
		t.Fatalf("fake company %q", h.fake.CompanyID())
	}

	// Health works and says serving.
	for _, svc := range append([]string{""}, server.Services...) {
		hr, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, hr, err)
		}
	}

	// Seed.
	seeded := must[*pb.SeedTokenResponse](t, "SeedToken")(h.admin.SeedToken(ctx, &pb.SeedTokenRequest{
		Connection: "demo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: h.login()},
	}))
	if c := seeded.GetConnection(); c.GetState() != pb.ConnectionState_CONNECTION_STATE_OK || c.GetGeneration() != 1 {
		t.Fatalf("after seed: %v", c)
	}

	// GetToken.
	tok := must[*pb.Token](t, "GetToken")(h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"}))
	if tok.GetGeneration() < 1 || tok.GetApiKey() != h.fake.ClientID() || tok.GetAccessToken() == "" || tok.GetConnection() != "demo" {
		t.Fatalf("GetToken: gen %d api_key %q token empty %v", tok.GetGeneration(), tok.GetApiKey(), tok.GetAccessToken() == "")
	}
	if !strings.EqualFold(tok.GetTokenType(), "bearer") || !tok.GetExpiresAt().AsTime().After(time.Now()) {
		t.Fatalf("GetToken: type %q expires %v", tok.GetTokenType(), tok.GetExpiresAt().AsTime())
	}

	// Invalidate: one refresh, generation + 1; the same report again: the
	// same new token, no call.
	before := h.refreshCalls()
	inv := must[*pb.InvalidateResponse](t, "Invalidate")(h.tb.Invalidate(ctx, &pb.InvalidateRequest{
		Connection: "demo", Generation: tok.GetGeneration(), Reason: "401 from test",
	}))
	nt := inv.GetToken()
	if nt.GetGeneration() != tok.GetGeneration()+1 || nt.GetAccessToken() == tok.GetAccessToken() || nt.GetAccessToken() == "" {
		t.Fatalf("Invalidate: generation %d after %d (same token %v)", nt.GetGeneration(), tok.GetGeneration(), nt.GetAccessToken() == tok.GetAccessToken())
	}
	if n := h.refreshCalls(); n != before+1 {
		t.Fatalf("Invalidate made %d refresh calls, want 1", n-before)
	}
	again := must[*pb.InvalidateResponse](t, "Invalidate again")(h.tb.Invalidate(ctx, &pb.InvalidateRequest{
		Connection: "demo", Generation: tok.GetGeneration(),
	}))
	if again.GetToken().GetGeneration() != nt.GetGeneration() || again.GetToken().GetAccessToken() != nt.GetAccessToken() {
		t.Fatalf("late Invalidate: generation %d, want %d with the same token", again.GetToken().GetGeneration(), nt.GetGeneration())
	}
	if n := h.refreshCalls(); n != before+1 {
		t.Fatalf("late Invalidate made a refresh call (%d in all)", n-before)
	}

	// CallAnalytics: 200 with the fake's JSON; after the access tokens are
	// revoked: 200 after one 401, with exactly one more refresh.
	suites := &pb.CallAnalyticsRequest{Connection: "demo", Method: "GET", Path: suitesPath}
	resp := must[*pb.CallAnalyticsResponse](t, "CallAnalytics")(h.tb.CallAnalytics(ctx, suites))
	checkSuites(t, resp)
	if resp.GetAttempts() != 1 || resp.GetGeneration() != nt.GetGeneration() {
		t.Fatalf("CallAnalytics: attempts %d generation %d", resp.GetAttempts(), resp.GetGeneration())
	}
	before = h.refreshCalls()
	if n := h.fake.RevokeAccessTokens(); n == 0 {
		t.Fatal("no access token to revoke")
	}
	resp = must[*pb.CallAnalyticsResponse](t, "CallAnalytics after revoke")(h.tb.CallAnalytics(ctx, suites))
	checkSuites(t, resp)
	if resp.GetAttempts() != 2 || resp.GetGeneration() != nt.GetGeneration()+1 {
		t.Fatalf("CallAnalytics after revoke: attempts %d generation %d", resp.GetAttempts(), resp.GetGeneration())
	}
	if n := h.refreshCalls(); n != before+1 {
		t.Fatalf("CallAnalytics after revoke made %d refresh calls, want 1", n-before)
	}
	gen := resp.GetGeneration()

	// A 403 from the API is returned as is, with no refresh.
	before, apiBefore := h.refreshCalls(), h.fake.Stats().APICalls
	resp = must[*pb.CallAnalyticsResponse](t, "CallAnalytics other company")(h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{
		Connection: "demo", Path: "/api/othercompany/reportsuites/collections/suites",
	}))
	if resp.GetStatusCode() != http.StatusForbidden || resp.GetAttempts() != 1 || !strings.Contains(string(resp.GetBody()), "403025") {
		t.Fatalf("other company: status %d attempts %d body %s", resp.GetStatusCode(), resp.GetAttempts(), resp.GetBody())
	}
	if n := h.refreshCalls(); n != before {
		t.Fatalf("a 403 caused %d refresh calls", n-before)
	}
	if n := h.fake.Stats().APICalls; n != apiBefore+1 {
		t.Fatalf("a 403 made %d API calls, want 1", n-apiBefore)
	}

	badInput(t, ctx, h, gen)

	// Admin.
	h.waitLeading(t)
	list := must[*pb.ListConnectionsResponse](t, "ListConnections")(h.admin.ListConnections(ctx, &pb.ListConnectionsRequest{}))
	var names []string
	for _, c := range list.GetConnections() {
		names = append(names, c.GetName())
	}
	if !slices.IsSorted(names) || !slices.Contains(names, "demo") || !slices.Contains(names, "unseeded") {
		t.Fatalf("ListConnections: %v", names)
	}
	c := must[*pb.Connection](t, "GetConnection")(h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "demo"}))
	if c.GetState() != pb.ConnectionState_CONNECTION_STATE_OK || c.GetGeneration() != gen || c.GetProvider() != "adobe" ||
		c.GetGrantType() != "refresh_token" || c.GetLeader() != "r1" || c.GetApiBaseUrl() != h.fakeURL ||
		c.GetTokenFingerprint() == "" || c.GetLastRefreshResult() != "ok" || c.GetExpiresAt() == nil || c.GetLoginTime() == nil {
		t.Fatalf("GetConnection: %v", c)
	}
	before = h.refreshCalls()
	rn := must[*pb.RefreshNowResponse](t, "RefreshNow")(h.admin.RefreshNow(ctx, &pb.RefreshNowRequest{Connection: "demo"}))
	if rn.GetConnection().GetGeneration() != gen+1 || rn.GetConnection().GetState() != pb.ConnectionState_CONNECTION_STATE_OK {
		t.Fatalf("RefreshNow: %v, want generation %d", rn.GetConnection(), gen+1)
	}
	if n := h.refreshCalls(); n != before+1 {
		t.Fatalf("RefreshNow made %d refresh calls", n-before)
	}
	gen++
	reps := must[*pb.ListReplicasResponse](t, "ListReplicas")(h.admin.ListReplicas(ctx, &pb.ListReplicasRequest{}))
	if len(reps.GetReplicas()) != 1 || !reps.GetReplicas()[0].GetLeader() || reps.GetReplicas()[0].GetId() != "r1" ||
		reps.GetLeader() != "r1" || reps.GetReplicas()[0].GetVersion() != "test" {
		t.Fatalf("ListReplicas: %v", reps)
	}
	// Record the tokens served so far (the redaction test checks them).
	tok = must[*pb.Token](t, "GetToken")(h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"}))
	if tok.GetGeneration() != gen {
		t.Fatalf("GetToken after RefreshNow: generation %d, want %d", tok.GetGeneration(), gen)
	}
	h.secrets.add(tok.GetAccessToken())

	// The refresh token is revoked: NEEDS_REAUTH, and the broker stops
	// calling the identity provider; a new seed brings the connection back.
	h.fake.RevokeRefreshTokens()
	before = h.refreshCalls()
	_, err := h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "demo", Generation: gen, Reason: "401"})
	wantStatus(t, "Invalidate with a revoked refresh token", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_REAUTH")
	if n := h.refreshCalls(); n != before+1 {
		t.Fatalf("%d refresh calls, want 1 (the one refused)", n-before)
	}
	c = must[*pb.Connection](t, "GetConnection")(h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "demo"}))
	if c.GetState() != pb.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH || !strings.Contains(c.GetLastErrorReason(), "invalid_grant") ||
		c.GetLastRefreshResult() != "invalid_grant" {
		t.Fatalf("GetConnection in NEEDS_REAUTH: %v", c)
	}
	for i := range 3 {
		_, err := h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "demo", Generation: gen})
		wantStatus(t, "Invalidate in NEEDS_REAUTH", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_REAUTH")
		if n := h.refreshCalls(); n != before+1 {
			t.Fatalf("Invalidate %d in NEEDS_REAUTH called the token endpoint", i)
		}
	}
	_, err = h.admin.RefreshNow(ctx, &pb.RefreshNowRequest{Connection: "demo"})
	wantStatus(t, "RefreshNow in NEEDS_REAUTH", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_REAUTH")
	if n := h.refreshCalls(); n != before+1 {
		t.Fatal("RefreshNow in NEEDS_REAUTH called the token endpoint")
	}
	seeded = must[*pb.SeedTokenResponse](t, "re-seed")(h.admin.SeedToken(ctx, &pb.SeedTokenRequest{
		Connection: "demo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: h.login()},
	}))
	if c := seeded.GetConnection(); c.GetState() != pb.ConnectionState_CONNECTION_STATE_OK || c.GetGeneration() != gen+1 || c.GetLastErrorReason() != "" {
		t.Fatalf("after re-seed: %v", c)
	}
	tok = must[*pb.Token](t, "GetToken after re-seed")(h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"}))
	if tok.GetGeneration() != gen+1 {
		t.Fatalf("GetToken after re-seed: generation %d", tok.GetGeneration())
	}
	h.secrets.add(tok.GetAccessToken())
	resp = must[*pb.CallAnalyticsResponse](t, "CallAnalytics after re-seed")(h.tb.CallAnalytics(ctx, suites))
	checkSuites(t, resp)
}

func checkSuites(t *testing.T, resp *pb.CallAnalyticsResponse) {
	t.Helper()
	if resp.GetStatusCode() != http.StatusOK {
		t.Fatalf("CallAnalytics: status %d body %s", resp.GetStatusCode(), resp.GetBody())
	}
	type suite struct {
		RSID string `json:"rsid"`
	}
	var page struct {
		Content       []suite `json:"content"`
		TotalElements int     `json:"totalElements"`
	}
	if err := json.Unmarshal(resp.GetBody(), &page); err != nil {
		t.Fatalf("CallAnalytics body is not the fake's JSON: %v: %s", err, resp.GetBody())
	}
	if page.TotalElements == 0 || !slices.Contains(page.Content, suite{RSID: fakeadobe.ReportSuiteID}) {
		t.Fatalf("CallAnalytics body: %s", resp.GetBody())
	}
	if ct := resp.GetHeaders()["content-type"]; !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content-type %q", ct)
	}
}

// badInput checks the refusals; gen is the current generation of "demo".
func badInput(t *testing.T, ctx context.Context, h *harness, gen uint64) {
	t.Helper()
	_, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{})
	wantStatus(t, "GetToken empty connection", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.tb.Invalidate(ctx, &pb.InvalidateRequest{})
	wantStatus(t, "Invalidate empty connection", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Path: suitesPath})
	wantStatus(t, "CallAnalytics empty connection", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.admin.GetConnection(ctx, &pb.GetConnectionRequest{})
	wantStatus(t, "GetConnection empty connection", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "Bad Name"})
	wantStatus(t, "GetToken malformed connection", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")

	_, err = h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "nope"})
	wantStatus(t, "GetToken unknown connection", err, codes.NotFound, "ERROR_REASON_CONNECTION_NOT_FOUND")
	_, err = h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "nope", Generation: 1})
	wantStatus(t, "Invalidate unknown connection", err, codes.NotFound, "ERROR_REASON_CONNECTION_NOT_FOUND")
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "nope", Path: suitesPath})
	wantStatus(t, "CallAnalytics unknown connection", err, codes.NotFound, "ERROR_REASON_CONNECTION_NOT_FOUND")
	_, err = h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "nope"})
	wantStatus(t, "GetConnection unknown connection", err, codes.NotFound, "ERROR_REASON_CONNECTION_NOT_FOUND")
	_, err = h.admin.SeedToken(ctx, &pb.SeedTokenRequest{Connection: "nope", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: "x"}})
	wantStatus(t, "SeedToken unknown connection", err, codes.NotFound, "ERROR_REASON_CONNECTION_NOT_FOUND")

	// Paths that would leave the API: refused before any token or API call.
	before, apiBefore := h.fake.Stats().TokenCalls, h.fake.Stats().APICalls
	for _, p := range []string{
		"https://evil.example/x", "//evil.example/x", "/api/../../etc", "/api/%2e%2e/x",
		"/api/%2E%2E/x", "/api/x%2fy", `/api\..\x`, "/api/x?y=1", "/api/x#f", "/api/x@evil.example",
	} {
		_, err := h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "demo", Path: p})
		wantStatus(t, "CallAnalytics path "+p, err, codes.InvalidArgument, "ERROR_REASON_REQUEST_NOT_ALLOWED", "ERROR_REASON_INVALID_ARGUMENT")
	}
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "demo", Path: ""})
	wantStatus(t, "CallAnalytics empty path", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "demo", Method: "TRACE", Path: suitesPath})
	wantStatus(t, "CallAnalytics TRACE", err, codes.InvalidArgument, "ERROR_REASON_REQUEST_NOT_ALLOWED")
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "demo", Path: suitesPath, Headers: map[string]string{"Authorization": "Bearer x"}})
	wantStatus(t, "CallAnalytics Authorization header", err, codes.InvalidArgument, "ERROR_REASON_REQUEST_NOT_ALLOWED")
	if after := h.fake.Stats(); after.APICalls != apiBefore || after.TokenCalls["refresh_token"] != before["refresh_token"] {
		t.Fatalf("refused requests reached the fake: %d API calls, %d token calls", after.APICalls-apiBefore, after.TokenCalls["refresh_token"]-before["refresh_token"])
	}

	_, err = h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "demo", Generation: gen + 1})
	wantStatus(t, "Invalidate ahead", err, codes.InvalidArgument, "ERROR_REASON_GENERATION_AHEAD")
	_, err = h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "demo", Generation: gen, Reason: "line\nbreak"})
	wantStatus(t, "Invalidate reason with a control character", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo", MinValidity: durationpb.New(-time.Second)})
	wantStatus(t, "GetToken negative min_validity", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	_, err = h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo", MinValidity: durationpb.New(48 * time.Hour)})
	wantStatus(t, "GetToken min_validity beyond the lifetime", err, codes.FailedPrecondition, "ERROR_REASON_MIN_VALIDITY_UNSATISFIABLE")
	_, err = h.admin.SeedToken(ctx, &pb.SeedTokenRequest{Connection: "demo"})
	wantStatus(t, "SeedToken without credential", err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")

	// A connection never seeded.
	_, err = h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "unseeded"})
	wantStatus(t, "GetToken unseeded", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_SEED")
	_, err = h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "unseeded"})
	wantStatus(t, "Invalidate unseeded", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_SEED")
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "unseeded", Path: suitesPath})
	wantStatus(t, "CallAnalytics unseeded", err, codes.FailedPrecondition, "ERROR_REASON_NEEDS_SEED")
	c := must[*pb.Connection](t, "GetConnection unseeded")(h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "unseeded"}))
	if c.GetState() != pb.ConnectionState_CONNECTION_STATE_NEEDS_SEED || c.GetGeneration() != 0 || c.GetTokenFingerprint() != "" {
		t.Fatalf("GetConnection unseeded: %v", c)
	}
	// A seed the fake refuses changes nothing.
	_, err = h.admin.SeedToken(ctx, &pb.SeedTokenRequest{Connection: "unseeded", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: "frt_not-a-real-token"}})
	wantStatus(t, "SeedToken bogus refresh token", err, codes.FailedPrecondition, "ERROR_REASON_SEED_REJECTED")
	c = must[*pb.Connection](t, "GetConnection unseeded")(h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "unseeded"}))
	if c.GetState() != pb.ConnectionState_CONNECTION_STATE_NEEDS_SEED {
		t.Fatalf("a refused seed changed the state: %v", c)
	}
}
