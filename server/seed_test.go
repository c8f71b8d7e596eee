package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/provider"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
	"google.golang.org/grpc/codes"
)

const redirectURI = "http://127.0.0.1:1/callback"

// authorize logs in at the fake's authorize endpoint with a PKCE challenge
// of verifier and returns the authorization code.
func (h *harness) authorize(t *testing.T, verifier string) string {
	t.Helper()
	q := url.Values{
		"client_id": {h.fake.ClientID()}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"scope":          {"openid,AdobeID,offline_access"},
		"code_challenge": {provider.Challenge(verifier)}, "code_challenge_method": {"S256"},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(h.fakeURL + "/ims/authorize/v2?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

func codeSeed(conn, code, verifier, redirect string) *pb.SeedTokenRequest {
	return &pb.SeedTokenRequest{Connection: conn, Credential: &pb.SeedTokenRequest_AuthorizationCode{
		AuthorizationCode: &pb.AuthorizationCode{Code: code, CodeVerifier: verifier, RedirectUri: redirect},
	}}
}

// TestSeedAuthorizationCode seeds with an authorization code and PKCE, and
// checks the refusals of SeedToken.
func TestSeedAuthorizationCode(t *testing.T) {
	h := newHarness(t, setup{policy: server.Policy{Disabled: true}, extra: []broker.ConnectionConfig{{
		Name: "s2s", Provider: broker.ProviderAdobe, Grant: broker.GrantClientCredentials,
		IMSURL: "http://127.0.0.1:1", ClientID: "x", ClientSecret: "y",
	}}})
	ctx := ctxT(t)

	// Malformed requests are refused before the broker sees them.
	for name, req := range map[string]*pb.SeedTokenRequest{
		"no code":             codeSeed("unseeded", "", "v", redirectURI),
		"no redirect_uri":     codeSeed("unseeded", "c", "v", ""),
		"verifier too long":   codeSeed("unseeded", "c", strings.Repeat("v", 129), redirectURI),
		"empty refresh token": {Connection: "unseeded", Credential: &pb.SeedTokenRequest_RefreshToken{}},
	} {
		_, err := h.admin.SeedToken(ctx, req)
		wantStatus(t, "SeedToken "+name, err, codes.InvalidArgument, "ERROR_REASON_INVALID_ARGUMENT")
	}
	// A client_credentials connection needs no seed.
	_, err := h.admin.SeedToken(ctx, &pb.SeedTokenRequest{Connection: "s2s", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: "x"}})
	wantStatus(t, "SeedToken client_credentials", err, codes.FailedPrecondition, "ERROR_REASON_SEED_REJECTED")

	// A wrong PKCE verifier is refused, and the code is spent.
	verifier := provider.NewVerifier()
	code := h.authorize(t, verifier)
	_, err = h.admin.SeedToken(ctx, codeSeed("unseeded", code, provider.NewVerifier(), redirectURI))
	wantStatus(t, "SeedToken wrong verifier", err, codes.FailedPrecondition, "ERROR_REASON_SEED_REJECTED")
	_, err = h.admin.SeedToken(ctx, codeSeed("unseeded", code, verifier, redirectURI))
	wantStatus(t, "SeedToken spent code", err, codes.FailedPrecondition, "ERROR_REASON_SEED_REJECTED")
	c := must[*pb.Connection](t, "GetConnection")(h.admin.GetConnection(ctx, &pb.GetConnectionRequest{Connection: "unseeded"}))
	if c.GetState() != pb.ConnectionState_CONNECTION_STATE_NEEDS_SEED {
		t.Fatalf("refused seeds changed the state: %v", c)
	}

	// The right one works, and the code cannot be used twice.
	verifier = provider.NewVerifier()
	code = h.authorize(t, verifier)
	seeded := must[*pb.SeedTokenResponse](t, "SeedToken code")(h.admin.SeedToken(ctx, codeSeed("unseeded", code, verifier, redirectURI)))
	if c := seeded.GetConnection(); c.GetState() != pb.ConnectionState_CONNECTION_STATE_OK || c.GetGeneration() != 1 ||
		c.GetLoginTime() == nil || c.GetRefreshTokenExpiresAt() == nil {
		t.Fatalf("after code seed: %v", c)
	}
	_, err = h.admin.SeedToken(ctx, codeSeed("unseeded", code, verifier, redirectURI))
	wantStatus(t, "SeedToken code twice", err, codes.FailedPrecondition, "ERROR_REASON_SEED_REJECTED")
	tok := must[*pb.Token](t, "GetToken")(h.tb.GetToken(ctx, &pb.GetTokenRequest{Connection: "unseeded"}))
	if tok.GetGeneration() != 1 || tok.GetAccessToken() == "" {
		t.Fatalf("GetToken after code seed: generation %d", tok.GetGeneration())
	}
	// The refresh token from the code works: Invalidate refreshes with it.
	inv := must[*pb.InvalidateResponse](t, "Invalidate")(h.tb.Invalidate(ctx, &pb.InvalidateRequest{Connection: "unseeded", Generation: 1}))
	if inv.GetToken().GetGeneration() != 2 {
		t.Fatalf("Invalidate after code seed: generation %d", inv.GetToken().GetGeneration())
	}
}
