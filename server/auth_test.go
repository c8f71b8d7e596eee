package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

func authPolicy() server.Policy {
	return server.Policy{
		APIKeys: map[string]string{
			server.HashAPIKey("key-token"): "svc-token",
			server.HashAPIKey("key-call"):  "svc-call",
			server.HashAPIKey("key-admin"): "svc-admin",
		},
		Access: map[string]server.Access{
			"demo": {Token: []string{"svc-token"}, Call: []string{"svc-call"}, Admin: []string{"svc-admin"}},
		},
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t, setup{policy: authPolicy()})
	ctx := ctxT(t)
	admin := withKey(ctx, "key-admin")
	if _, err := h.admin.SeedToken(admin, &pb.SeedTokenRequest{
		Connection: "demo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: h.login()},
	}); err != nil {
		t.Fatalf("SeedToken as admin: %v", err)
	}

	// Health needs no credentials, even with authentication on.
	for _, svc := range append([]string{""}, server.Services...) {
		hr, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q without credentials: %v %v", svc, hr, err)
		}
	}

	getToken := func(ctx context.Context) error {
		_, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"})
		return err
	}
	invalidate := func(ctx context.Context) error {
		_, err := h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "demo", Generation: 1})
		return err
	}
	call := func(ctx context.Context) error {
		resp, err := h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "demo", Path: suitesPath})
		if err == nil {
			checkSuites(t, resp)
		}
		return err
	}
	getConnection := func(ctx context.Context) error {
		_, err := h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "demo"})
		return err
	}
	refreshNow := func(ctx context.Context) error {
		_, err := h.admin.RefreshNow(ctx, &pb.RefreshNowRequest{Connection: "demo"})
		return err
	}
	seed := func(ctx context.Context) error {
		_, err := h.admin.SeedToken(ctx, &pb.SeedTokenRequest{
			Connection: "demo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: "frt_never-sent"},
		})
		return err
	}
	listReplicas := func(ctx context.Context) error {
		_, err := h.admin.ListReplicas(ctx, &pb.ListReplicasRequest{})
		return err
	}
	listConnections := func(ctx context.Context) error {
		_, err := h.admin.ListConnections(ctx, &pb.ListConnectionsRequest{})
		return err
	}
	otherConnection := func(ctx context.Context) error {
		_, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "unseeded"})
		return err
	}

	for _, tc := range []struct {
		name string
		key  string // "" sends no credentials
		rpc  func(context.Context) error
		code codes.Code
		// caller and perm, for PERMISSION_DENIED: named in the message.
		caller, perm string
	}{
		{"no credentials GetToken", "", getToken, codes.Unauthenticated, "", ""},
		{"no credentials CallAnalytics", "", call, codes.Unauthenticated, "", ""},
		{"no credentials ListConnections", "", listConnections, codes.Unauthenticated, "", ""},
		{"no credentials ListReplicas", "", listReplicas, codes.Unauthenticated, "", ""},
		{"wrong key GetToken", "key-wrong", getToken, codes.Unauthenticated, "", ""},
		{"wrong key GetConnection", "key-wrong", getConnection, codes.Unauthenticated, "", ""},
		{"hash as key", server.HashAPIKey("key-token"), getToken, codes.Unauthenticated, "", ""},
		{"call caller GetToken", "key-call", getToken, codes.PermissionDenied, "svc-call", "token"},
		{"call caller Invalidate", "key-call", invalidate, codes.PermissionDenied, "svc-call", "token"},
		{"token caller CallAnalytics", "key-token", call, codes.PermissionDenied, "svc-token", "call"},
		{"token caller GetConnection", "key-token", getConnection, codes.PermissionDenied, "svc-token", "admin"},
		{"call caller RefreshNow", "key-call", refreshNow, codes.PermissionDenied, "svc-call", "admin"},
		{"token caller SeedToken", "key-token", seed, codes.PermissionDenied, "svc-token", "admin"},
		{"token caller ListReplicas", "key-token", listReplicas, codes.PermissionDenied, "svc-token", "admin"},
		{"admin GetToken", "key-admin", getToken, codes.PermissionDenied, "svc-admin", "token"},
		{"token caller other connection", "key-token", otherConnection, codes.PermissionDenied, "svc-token", "token"},
		{"token caller GetToken", "key-token", getToken, codes.OK, "", ""},
		{"token caller Invalidate", "key-token", invalidate, codes.OK, "", ""},
		{"call caller CallAnalytics", "key-call", call, codes.OK, "", ""},
		{"admin GetConnection", "key-admin", getConnection, codes.OK, "", ""},
		{"admin RefreshNow", "key-admin", refreshNow, codes.OK, "", ""},
		{"admin ListReplicas", "key-admin", listReplicas, codes.OK, "", ""},
		{"admin ListConnections", "key-admin", listConnections, codes.OK, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctx
			if tc.key != "" {
				ctx = withKey(ctx, tc.key)
			}
			err := tc.rpc(ctx)
			switch tc.code {
			case codes.OK:
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
			case codes.Unauthenticated:
				wantStatus(t, tc.name, err, codes.Unauthenticated, "ERROR_REASON_UNAUTHENTICATED")
			case codes.PermissionDenied:
				st := wantStatus(t, tc.name, err, codes.PermissionDenied, "ERROR_REASON_PERMISSION_DENIED")
				if !strings.Contains(st.Message(), `"`+tc.caller+`"`) || !strings.Contains(st.Message(), `"`+tc.perm+`"`) {
					t.Fatalf("message %q does not name caller %q and permission %q", st.Message(), tc.caller, tc.perm)
				}
				md := errorInfo(st).GetMetadata()
				if tc.name != "token caller ListReplicas" && (md["caller"] != tc.caller || md["permission"] != tc.perm) {
					t.Fatalf("ErrorInfo metadata %v", md)
				}
			default:
				t.Fatalf("bad case %v", tc.code)
			}
		})
	}

	// ListConnections shows each caller the connections it administers.
	list, err := h.admin.ListConnections(withKey(ctx, "key-token"), &pb.ListConnectionsRequest{})
	if err != nil || len(list.GetConnections()) != 0 {
		t.Fatalf("ListConnections as a non-admin: %v %v", list, err)
	}
	list, err = h.admin.ListConnections(admin, &pb.ListConnectionsRequest{})
	if err != nil || len(list.GetConnections()) != 1 || list.GetConnections()[0].GetName() != "demo" {
		t.Fatalf("ListConnections as admin of demo: %v %v", list, err)
	}
}

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert: cert, key: key, pool: pool}
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue signs a leaf certificate: a server certificate for 127.0.0.1, or a
// client certificate with the URI SAN uri.
func (c *ca) issue(t *testing.T, cn string, uri string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// clientTLS trusts roots and presents cert, if given, whatever CAs the
// server asks for (Go's client would otherwise send no certificate that the
// server's CAs did not sign).
func clientTLS(roots *x509.CertPool, cert *tls.Certificate) credentials.TransportCredentials {
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return credentials.NewTLS(cfg)
}

func TestMutualTLS(t *testing.T) {
	const spiffe = "spiffe://corp/reporting"
	corp := newCA(t, "corp test CA")
	other := newCA(t, "unknown test CA")
	serverCert := corp.issue(t, "tokenbroker", "", true)
	reporting := corp.issue(t, "reporting", spiffe, false)
	stranger := other.issue(t, "stranger", spiffe, false)

	policy := server.Policy{
		APIKeys: map[string]string{server.HashAPIKey("key-admin"): "svc-admin"},
		Access:  map[string]server.Access{"demo": {Token: []string{spiffe}, Admin: []string{"svc-admin"}}},
	}
	serverTLS := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    corp.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	h := newHarness(t, setup{
		policy:     policy,
		serverOpts: []grpc.ServerOption{grpc.Creds(serverTLS)},
		dial:       clientTLS(corp.pool, &reporting),
	})
	ctx := ctxT(t)
	if _, err := h.b.Seed(ctx, "demo", broker.Seed{RefreshToken: h.login()}); err != nil {
		t.Fatal(err)
	}

	tok, err := h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"})
	if err != nil || tok.GetGeneration() != 1 || tok.GetAccessToken() == "" {
		t.Fatalf("GetToken over mTLS as %s: %v %v", spiffe, tok.GetGeneration(), err)
	}
	// The certificate names the caller: it has token access, not call.
	_, err = h.tb.CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: "demo", Path: suitesPath})
	st := wantStatus(t, "CallAnalytics over mTLS", err, codes.PermissionDenied, "ERROR_REASON_PERMISSION_DENIED")
	if !strings.Contains(st.Message(), spiffe) || !strings.Contains(st.Message(), `"call"`) {
		t.Fatalf("message %q does not name %s and call", st.Message(), spiffe)
	}
	// With both a verified certificate and an API key, the certificate names
	// the caller (Policy.authenticate): the admin key grants nothing here.
	_, err = h.admin.GetConnection(withKey(ctx, "key-admin"), &pb.GetConnectionRequest{Connection: "demo"})
	wantStatus(t, "GetConnection with a certificate and an admin key", err, codes.PermissionDenied, "ERROR_REASON_PERMISSION_DENIED")

	// A certificate from an unknown CA, or none: the handshake fails.
	for name, creds := range map[string]credentials.TransportCredentials{
		"unknown CA":     clientTLS(corp.pool, &stranger),
		"no certificate": clientTLS(corp.pool, nil),
	} {
		conn := h.dial(t, creds)
		_, err := pb.NewTokenBrokerClient(conn).GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"})
		st := wantStatus(t, "GetToken with "+name, err, codes.Unavailable)
		t.Logf("%s: %s", name, st.Message())
	}
	// A client that does not trust the server's CA fails too.
	conn := h.dial(t, clientTLS(other.pool, &reporting))
	_, err = pb.NewTokenBrokerClient(conn).GetToken(ctx, &pb.GetTokenRequest{Connection: "demo"})
	st = wantStatus(t, "GetToken not trusting the server", err, codes.Unavailable)
	t.Logf("client not trusting the server: %s", st.Message())
}

// TestReflectionAuth: server reflection is open unless the policy puts it
// behind authentication.
func TestReflectionAuth(t *testing.T) {
	listServices := func(ctx context.Context, h *harness) ([]string, error) {
		stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		_ = stream.CloseSend()
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, nil
	}
	for _, requireAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("requires_auth=%v", requireAuth), func(t *testing.T) {
			p := authPolicy()
			p.ReflectionRequiresAuth = requireAuth
			h := newHarness(t, setup{policy: p})
			ctx := ctxT(t)
			names, err := listServices(ctx, h)
			if requireAuth {
				wantStatus(t, "reflection without credentials", err, codes.Unauthenticated, "ERROR_REASON_UNAUTHENTICATED")
				names, err = listServices(withKey(ctx, "key-token"), h)
			}
			if err != nil || !slices.Contains(names, pb.TokenBroker_ServiceDesc.ServiceName) || !slices.Contains(names, pb.Admin_ServiceDesc.ServiceName) {
				t.Fatalf("reflection: %v %v", names, err)
			}
		})
	}
}
