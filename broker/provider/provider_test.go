package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testClientID = "client-id"
	// The secret needs form-encoding in a Basic header (RFC 6749 2.3.1),
	// which the fake server undoes: proof that both sides agree.
	testSecret = "cs-0123456789abcdef+/=&:%SECRET"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedClock() time.Time { return testNow }

// seen is one request as the fake token endpoint received it.
type seen struct {
	Path      string
	Form      url.Values
	HasBasic  bool
	BasicUser string
	BasicPass string
}

// wire says how the client authenticated in this request.
func (s seen) wire() string {
	inForm := s.Form.Has("client_secret")
	switch {
	case s.HasBasic && !inForm:
		return "basic"
	case !s.HasBasic && inForm:
		return "form"
	case s.HasBasic:
		return "both"
	default:
		return "none"
	}
}

type reply struct {
	status int
	header map[string]string
	body   string
}

func jsonReply(status int, v map[string]any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return reply{status: status, header: map[string]string{"Content-Type": "application/json"}, body: string(b)}
}

func tokenReply(v map[string]any) reply { return jsonReply(http.StatusOK, v) }

func okToken() reply {
	return tokenReply(map[string]any{"access_token": "at-1", "token_type": "bearer", "expires_in": 3600})
}

// fakeServer is a token endpoint whose answers the test decides.
type fakeServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newFakeServer(t *testing.T, respond func(seen) reply) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		s := seen{Path: r.URL.Path, Form: r.PostForm}
		if u, p, ok := r.BasicAuth(); ok {
			s.HasBasic = true
			s.BasicUser, _ = url.QueryUnescape(u)
			s.BasicPass, _ = url.QueryUnescape(p)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, s)
		f.mu.Unlock()
		rep := respond(s)
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = w.Write([]byte(rep.body))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fakeServer) last(t *testing.T) seen {
	t.Helper()
	r := f.requests()
	if len(r) == 0 {
		t.Fatal("the token endpoint received no request")
	}
	return r[len(r)-1]
}

// authenticated reports whether s carries the test client's credentials in
// one of the ways accept allows ("basic", "form" or "both").
func authenticated(s seen, accept string) bool {
	basic := s.wire() == "basic" && s.BasicUser == testClientID && s.BasicPass == testSecret
	form := s.wire() == "form" && s.Form.Get("client_id") == testClientID && s.Form.Get("client_secret") == testSecret
	switch accept {
	case "basic":
		return basic
	case "form":
		return form
	default:
		return basic || form
	}
}

func testConfig(tokenURL string) Config {
	return Config{
		TokenURL:     tokenURL,
		AuthURL:      "https://login.example.com/authorize",
		ClientID:     testClientID,
		ClientSecret: testSecret,
		AuthStyle:    AuthStyleBasic,
		Now:          fixedClock,
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	return e
}

func TestClientAuthentication(t *testing.T) {
	cases := []struct {
		name     string
		style    AuthStyle
		accept   string // what the server accepts: basic, form, both
		wantWire []string
		wantErr  string // OAuth code of the first call's error
	}{
		{name: "basic", style: AuthStyleBasic, accept: "both", wantWire: []string{"basic", "basic"}},
		{name: "form", style: AuthStyleForm, accept: "both", wantWire: []string{"form", "form"}},
		{name: "auto against a basic-only server", style: AuthStyleAuto, accept: "basic", wantWire: []string{"basic", "basic"}},
		{name: "auto against a form-only server learns form", style: AuthStyleAuto, accept: "form", wantWire: []string{"basic", "form", "form"}},
		{name: "empty style is auto", style: "", accept: "form", wantWire: []string{"basic", "form", "form"}},
		{name: "explicit basic does not fall back", style: AuthStyleBasic, accept: "form", wantWire: []string{"basic"}, wantErr: "invalid_client"},
		{name: "explicit form does not fall back", style: AuthStyleForm, accept: "basic", wantWire: []string{"form"}, wantErr: "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s seen) reply {
				if !authenticated(s, tc.accept) {
					return jsonReply(http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
				}
				return okToken()
			})
			cfg := testConfig(srv.URL)
			cfg.AuthStyle = tc.style
			c := newClient(t, cfg)

			calls := 2
			if tc.wantErr != "" {
				calls = 1
			}
			for i := range calls {
				tok, err := c.ClientCredentials(t.Context())
				if tc.wantErr != "" {
					if e := asError(t, err); e.Code != tc.wantErr || e.Kind != Permanent {
						t.Fatalf("call %d: error %v, want permanent %s", i, err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if tok.AccessToken != "at-1" {
					t.Fatalf("call %d: access token %q", i, tok.AccessToken)
				}
			}
			var got []string
			for _, r := range srv.requests() {
				got = append(got, r.wire())
			}
			if strings.Join(got, ",") != strings.Join(tc.wantWire, ",") {
				t.Fatalf("client auth on the wire = %v, want %v", got, tc.wantWire)
			}
		})
	}
}

// TestAutoResendsOnlyAfterClientAuthFailure: auto-detection must not send a
// refresh token twice when the first answer could mean it was used.
func TestAutoResendsOnlyAfterClientAuthFailure(t *testing.T) {
	cases := []struct {
		name     string
		first    reply
		wantReqs int
	}{
		{"invalid_grant", jsonReply(http.StatusBadRequest, map[string]any{"error": "invalid_grant"}), 1},
		{"server error", jsonReply(http.StatusInternalServerError, map[string]any{"error": "server_error"}), 1},
		{"rate limited", reply{status: http.StatusTooManyRequests}, 1},
		{"invalid_client", jsonReply(http.StatusUnauthorized, map[string]any{"error": "invalid_client"}), 2},
		{"invalid_request", jsonReply(http.StatusBadRequest, map[string]any{"error": "invalid_request"}), 2},
		{"bare 401", reply{status: http.StatusUnauthorized, body: "Unauthorized"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s seen) reply {
				if s.wire() == "basic" {
					return tc.first
				}
				return okToken()
			})
			cfg := testConfig(srv.URL)
			cfg.AuthStyle = AuthStyleAuto
			_, _ = newClient(t, cfg).Refresh(t.Context(), "rt-1")
			if got := len(srv.requests()); got != tc.wantReqs {
				t.Fatalf("%d requests, want %d", got, tc.wantReqs)
			}
		})
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	cases := []struct {
		name        string
		respRefresh any // refresh_token in the response; nil: absent
		wantRefresh string
		wantRotated bool
	}{
		{name: "rotating", respRefresh: "rt-2", wantRefresh: "rt-2", wantRotated: true},
		{name: "fixed, omitted", respRefresh: nil, wantRefresh: "rt-1", wantRotated: false},
		{name: "fixed, echoed", respRefresh: "rt-1", wantRefresh: "rt-1", wantRotated: false},
		{name: "fixed, empty string", respRefresh: "", wantRefresh: "rt-1", wantRotated: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s seen) reply {
				body := map[string]any{"access_token": "at-2", "token_type": "Bearer", "expires_in": 86399}
				if tc.respRefresh != nil {
					body["refresh_token"] = tc.respRefresh
				}
				return tokenReply(body)
			})
			cfg := testConfig(srv.URL)
			cfg.Scopes = []string{"openid", "offline_access"}
			tok, err := newClient(t, cfg).Refresh(t.Context(), "rt-1")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "at-2" || tok.RefreshToken != tc.wantRefresh || tok.Rotated != tc.wantRotated {
				t.Fatalf("got access %q refresh %q rotated %v, want at-2 %q %v",
					tok.AccessToken, tok.RefreshToken, tok.Rotated, tc.wantRefresh, tc.wantRotated)
			}
			req := srv.last(t)
			if req.Form.Get("grant_type") != "refresh_token" || req.Form.Get("refresh_token") != "rt-1" {
				t.Fatalf("request form %v", req.Form)
			}
		})
	}
}

func TestGrantParameters(t *testing.T) {
	verifier := NewVerifier()
	cases := []struct {
		name   string
		scopes []string
		call   func(ctx context.Context, c *Client) (Token, error)
		want   map[string]string
		absent []string
	}{
		{
			name:   "client_credentials sends the scopes",
			scopes: []string{"openid", "AdobeID", "read_organizations"},
			call:   func(ctx context.Context, c *Client) (Token, error) { return c.ClientCredentials(ctx) },
			want:   map[string]string{"grant_type": "client_credentials", "scope": "openid AdobeID read_organizations"},
			absent: []string{"refresh_token", "code"},
		},
		{
			name:   "client_credentials without scopes",
			call:   func(ctx context.Context, c *Client) (Token, error) { return c.ClientCredentials(ctx) },
			want:   map[string]string{"grant_type": "client_credentials"},
			absent: []string{"scope"},
		},
		{
			name:   "exchange sends the PKCE verifier and redirect_uri",
			scopes: []string{"openid", "offline_access"},
			call: func(ctx context.Context, c *Client) (Token, error) {
				return c.Exchange(ctx, "the-code", verifier, "https://broker.example.com/callback")
			},
			want: map[string]string{
				"grant_type":    "authorization_code",
				"code":          "the-code",
				"code_verifier": verifier,
				"redirect_uri":  "https://broker.example.com/callback",
			},
			absent: []string{"scope", "refresh_token"},
		},
		{
			name: "exchange without PKCE or redirect_uri",
			call: func(ctx context.Context, c *Client) (Token, error) {
				return c.Exchange(ctx, "the-code", "", "")
			},
			want:   map[string]string{"grant_type": "authorization_code", "code": "the-code"},
			absent: []string{"code_verifier", "redirect_uri"},
		},
		{
			name:   "refresh keeps the granted scope by sending none",
			scopes: []string{"openid", "offline_access"},
			call:   func(ctx context.Context, c *Client) (Token, error) { return c.Refresh(ctx, "rt-1") },
			want:   map[string]string{"grant_type": "refresh_token", "refresh_token": "rt-1"},
			absent: []string{"scope", "code"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(seen) reply {
				return tokenReply(map[string]any{"access_token": "at-1", "refresh_token": "rt-9", "expires_in": 60})
			})
			cfg := testConfig(srv.URL)
			cfg.Scopes = tc.scopes
			if _, err := tc.call(t.Context(), newClient(t, cfg)); err != nil {
				t.Fatal(err)
			}
			form := srv.last(t).Form
			for k, v := range tc.want {
				if got := form.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tc.absent {
				if form.Has(k) {
					t.Errorf("%s sent (%q), want absent", k, form.Get(k))
				}
			}
		})
	}
}

func TestGrantResults(t *testing.T) {
	srv := newFakeServer(t, func(seen) reply {
		return tokenReply(map[string]any{"access_token": "at-1", "refresh_token": "rt-9", "expires_in": 60, "scope": "openid"})
	})
	c := newClient(t, testConfig(srv.URL))

	cc, err := c.ClientCredentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cc.RefreshToken != "" || cc.Rotated {
		t.Errorf("client_credentials kept refresh token %q rotated %v; want neither", cc.RefreshToken, cc.Rotated)
	}
	ex, err := c.Exchange(t.Context(), "the-code", NewVerifier(), "")
	if err != nil {
		t.Fatal(err)
	}
	if ex.RefreshToken != "rt-9" || ex.Rotated || ex.Scope != "openid" {
		t.Errorf("exchange gave refresh %q rotated %v scope %q; want rt-9 false openid", ex.RefreshToken, ex.Rotated, ex.Scope)
	}
}

func TestAuthCodeURL(t *testing.T) {
	cfg := testConfig("https://login.example.com/token")
	cfg.Scopes = []string{"openid", "offline_access"}
	c := newClient(t, cfg)
	verifier := NewVerifier()

	raw := c.AuthCodeURL("st-1", Challenge(verifier), "https://broker.example.com/callback")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme+"://"+u.Host+u.Path != cfg.AuthURL {
		t.Errorf("URL %q does not start with the AuthURL", raw)
	}
	q := u.Query()
	want := map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"state":                 "st-1",
		"scope":                 "openid offline_access",
		"redirect_uri":          "https://broker.example.com/callback",
		"code_challenge":        Challenge(verifier),
		"code_challenge_method": "S256",
	}
	for k, v := range want {
		if got := q.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if strings.Contains(raw, verifier) || strings.Contains(raw, url.QueryEscape(testSecret)) {
		t.Errorf("authorize URL carries the verifier or the client secret: %s", raw)
	}

	noPKCE, _ := url.Parse(c.AuthCodeURL("st-1", "", ""))
	if noPKCE.Query().Has("code_challenge_method") || noPKCE.Query().Has("redirect_uri") {
		t.Errorf("empty challenge and redirect still sent: %s", noPKCE)
	}

	cfg.AuthURL = ""
	if got := newClient(t, cfg).AuthCodeURL("st-1", Challenge(verifier), ""); got != "" {
		t.Errorf("AuthCodeURL without AuthURL = %q, want empty", got)
	}
}

func TestPKCE(t *testing.T) {
	// RFC 7636 appendix B.
	if got := Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("Challenge = %q", got)
	}
	a, b := NewVerifier(), NewVerifier()
	if len(a) != 43 || a == b {
		t.Errorf("verifiers %q and %q: want 43 characters, distinct", a, b)
	}
	if strings.Trim(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		t.Errorf("verifier %q has characters outside RFC 7636's unreserved set", a)
	}
}

func TestExpiresIn(t *testing.T) {
	cases := []struct {
		name          string
		millis        bool
		defaultExpiry time.Duration
		resp          reply
		wantExpiresIn time.Duration
		wantDefaulted bool
	}{
		{name: "seconds", resp: tokenReply(map[string]any{"access_token": "a", "expires_in": 86399}), wantExpiresIn: 86399 * time.Second},
		{name: "milliseconds (Adobe v1)", millis: true, resp: tokenReply(map[string]any{"access_token": "a", "expires_in": 86399000}), wantExpiresIn: 86399 * time.Second},
		{name: "numeric string", resp: tokenReply(map[string]any{"access_token": "a", "expires_in": "3600"}), wantExpiresIn: time.Hour},
		{
			name:          "form-encoded response",
			resp:          reply{status: 200, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "access_token=a&token_type=bearer&expires_in=120"},
			wantExpiresIn: 2 * time.Minute,
		},
		{name: "missing: default hour", resp: tokenReply(map[string]any{"access_token": "a"}), wantExpiresIn: time.Hour, wantDefaulted: true},
		{name: "missing: configured default", defaultExpiry: 5 * time.Minute, resp: tokenReply(map[string]any{"access_token": "a"}), wantExpiresIn: 5 * time.Minute, wantDefaulted: true},
		{name: "zero", resp: tokenReply(map[string]any{"access_token": "a", "expires_in": 0}), wantExpiresIn: time.Hour, wantDefaulted: true},
		{name: "negative", resp: tokenReply(map[string]any{"access_token": "a", "expires_in": -5}), wantExpiresIn: time.Hour, wantDefaulted: true},
		{name: "null", resp: tokenReply(map[string]any{"access_token": "a", "expires_in": nil}), wantExpiresIn: time.Hour, wantDefaulted: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(seen) reply {
				r := tc.resp
				// A server clock a year off must not matter.
				r.header = map[string]string{"Date": testNow.Add(365 * 24 * time.Hour).Format(http.TimeFormat)}
				for k, v := range tc.resp.header {
					r.header[k] = v
				}
				return r
			})
			cfg := testConfig(srv.URL)
			cfg.ExpiresInMillis = tc.millis
			cfg.DefaultExpiresIn = tc.defaultExpiry
			tok, err := newClient(t, cfg).ClientCredentials(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.ExpiresIn != tc.wantExpiresIn || tok.ExpiresInDefaulted != tc.wantDefaulted {
				t.Errorf("ExpiresIn %v defaulted %v, want %v %v", tok.ExpiresIn, tok.ExpiresInDefaulted, tc.wantExpiresIn, tc.wantDefaulted)
			}
			if want := testNow.Add(tc.wantExpiresIn); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry %v, want %v", tok.Expiry, want)
			}
		})
	}
}

// TestExpiryCountsFromRequest: with a clock that moves on every reading, the
// expiry is computed from the reading taken before the request was sent.
func TestExpiryCountsFromRequest(t *testing.T) {
	srv := newFakeServer(t, func(seen) reply { return okToken() })
	var mu sync.Mutex
	next := testNow
	cfg := testConfig(srv.URL)
	cfg.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := next
		next = next.Add(time.Minute)
		return now
	}
	tok, err := newClient(t, cfg).Refresh(t.Context(), "rt-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := testNow.Add(time.Hour); !tok.Expiry.Equal(want) {
		t.Fatalf("Expiry %v, want %v (first clock reading + expires_in)", tok.Expiry, want)
	}
}

func TestTokenNormalisation(t *testing.T) {
	cases := []struct {
		tokenType any // nil: absent
		want      string
	}{
		{"bearer", "Bearer"},
		{"BEARER", "Bearer"},
		{"Bearer", "Bearer"},
		{nil, "Bearer"},
		{"", "Bearer"},
		{"mac", "MAC"},
		{"DPoP", "DPoP"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.tokenType), func(t *testing.T) {
			srv := newFakeServer(t, func(seen) reply {
				body := map[string]any{"access_token": "at-1", "expires_in": 60, "scope": "openid AdobeID"}
				if tc.tokenType != nil {
					body["token_type"] = tc.tokenType
				}
				return tokenReply(body)
			})
			tok, err := newClient(t, testConfig(srv.URL)).ClientCredentials(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != tc.want || tok.Scope != "openid AdobeID" {
				t.Fatalf("TokenType %q scope %q, want %q and the server's scope", tok.TokenType, tok.Scope, tc.want)
			}
		})
	}
}

func TestAdobePreset(t *testing.T) {
	cases := []struct {
		base       string
		wantToken  string
		wantAuth   string
		wantMillis bool
	}{
		{"", "https://ims-na1.adobelogin.com/ims/token/v3", "https://ims-na1.adobelogin.com/ims/authorize/v2", false},
		{"https://ims-na1.adobelogin.com/", "https://ims-na1.adobelogin.com/ims/token/v3", "https://ims-na1.adobelogin.com/ims/authorize/v2", false},
		{"https://ims-na1-stg1.adobelogin.com", "https://ims-na1-stg1.adobelogin.com/ims/token/v3", "https://ims-na1-stg1.adobelogin.com/ims/authorize/v2", false},
		{"https://ims-na1.adobelogin.com/ims/token/v1", "https://ims-na1.adobelogin.com/ims/token/v1", "https://ims-na1.adobelogin.com/ims/authorize/v2", true},
		{"https://ims-na1.adobelogin.com/ims/token/v1/", "https://ims-na1.adobelogin.com/ims/token/v1", "https://ims-na1.adobelogin.com/ims/authorize/v2", true},
		{"https://ims-na1.adobelogin.com/ims/token/v3", "https://ims-na1.adobelogin.com/ims/token/v3", "https://ims-na1.adobelogin.com/ims/authorize/v2", false},
		{"http://127.0.0.1:8080/fake/ims/token/v1", "http://127.0.0.1:8080/fake/ims/token/v1", "http://127.0.0.1:8080/fake/ims/authorize/v2", true},
	}
	for _, tc := range cases {
		t.Run(tc.base, func(t *testing.T) {
			cfg := Adobe(tc.base, testClientID, testSecret, []string{"openid", "offline_access"})
			if cfg.TokenURL != tc.wantToken || cfg.AuthURL != tc.wantAuth || cfg.ExpiresInMillis != tc.wantMillis {
				t.Errorf("token %q auth %q millis %v; want %q %q %v",
					cfg.TokenURL, cfg.AuthURL, cfg.ExpiresInMillis, tc.wantToken, tc.wantAuth, tc.wantMillis)
			}
			if cfg.AuthStyle != AuthStyleForm || cfg.ClientID != testClientID || cfg.ClientSecret != testSecret {
				t.Errorf("style %q client %q", cfg.AuthStyle, cfg.ClientID)
			}
			if _, err := New(cfg); err != nil {
				t.Errorf("New(Adobe(%q)): %v", tc.base, err)
			}
		})
	}
}

// TestAdobeEndpoints runs the preset against a fake IMS that answers like
// Adobe: v3 in seconds, v1 in milliseconds, client credentials as form fields.
func TestAdobeEndpoints(t *testing.T) {
	srv := newFakeServer(t, func(s seen) reply {
		if !authenticated(s, "form") {
			return jsonReply(http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
		}
		expires := 86399
		if strings.HasSuffix(s.Path, "/ims/token/v1") {
			expires = 86399000
		}
		return tokenReply(map[string]any{"access_token": "at-1", "refresh_token": "rt-2", "token_type": "bearer", "expires_in": expires})
	})
	for _, base := range []string{srv.URL, srv.URL + "/ims/token/v1", srv.URL + "/ims/token/v3"} {
		t.Run(base, func(t *testing.T) {
			cfg := Adobe(base, testClientID, testSecret, []string{"openid", "offline_access"})
			cfg.Now = fixedClock
			tok, err := newClient(t, cfg).Refresh(t.Context(), "rt-1")
			if err != nil {
				t.Fatal(err)
			}
			if tok.ExpiresIn != 86399*time.Second || !tok.Expiry.Equal(testNow.Add(86399*time.Second)) {
				t.Fatalf("ExpiresIn %v Expiry %v", tok.ExpiresIn, tok.Expiry)
			}
			if !tok.Rotated || tok.RefreshToken != "rt-2" {
				t.Fatalf("refresh %q rotated %v", tok.RefreshToken, tok.Rotated)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	html := func(status int) reply {
		return reply{status: status, header: map[string]string{"Content-Type": "text/html"}, body: "<html><body>oops</body></html>"}
	}
	withHeader := func(r reply, k, v string) reply {
		h := map[string]string{k: v}
		for hk, hv := range r.header {
			h[hk] = hv
		}
		r.header = h
		return r
	}
	oauthErr := func(status int, code string) reply {
		return jsonReply(status, map[string]any{"error": code, "error_description": "because " + code})
	}
	adobe429 := jsonReply(http.StatusTooManyRequests, map[string]any{"error_code": "429050", "message": "Too many requests"})

	cases := []struct {
		name       string
		resp       reply
		wantKind   Kind
		wantCode   string
		wantStatus int
		wantRetry  time.Duration
	}{
		{"invalid_grant", oauthErr(400, "invalid_grant"), Permanent, "invalid_grant", 400, 0},
		{"invalid_client", oauthErr(401, "invalid_client"), Permanent, "invalid_client", 401, 0},
		{"unauthorized_client", oauthErr(400, "unauthorized_client"), Permanent, "unauthorized_client", 400, 0},
		{"unsupported_grant_type", oauthErr(400, "unsupported_grant_type"), Permanent, "unsupported_grant_type", 400, 0},
		{"invalid_scope", oauthErr(400, "invalid_scope"), Permanent, "invalid_scope", 400, 0},
		{"invalid_request", oauthErr(400, "invalid_request"), Permanent, "invalid_request", 400, 0},
		{"unknown OAuth code on 400", oauthErr(400, "access_denied"), Permanent, "access_denied", 400, 0},
		{"400 without a body", reply{status: 400}, Permanent, "http_400", 400, 0},
		{"404 HTML", html(404), Permanent, "http_404", 404, 0},
		{"invalid_grant with 200", oauthErr(200, "invalid_grant"), Permanent, "invalid_grant", 200, 0},
		{"server_error", oauthErr(500, "server_error"), Transient, "server_error", 500, 0},
		{"temporarily_unavailable on 400", oauthErr(400, "temporarily_unavailable"), Transient, "temporarily_unavailable", 400, 0},
		{"invalid_grant on 500 is still a 5xx", oauthErr(500, "invalid_grant"), Transient, "invalid_grant", 500, 0},
		{"502 HTML", html(502), Transient, "http_502", 502, 0},
		{"503 Retry-After seconds", withHeader(html(503), "Retry-After", "7"), Transient, "http_503", 503, 7 * time.Second},
		{"503 Retry-After date", withHeader(oauthErr(503, "temporarily_unavailable"), "Retry-After", testNow.Add(90*time.Second).Format(http.TimeFormat)), Transient, "temporarily_unavailable", 503, 90 * time.Second},
		{"429 Adobe body, Retry-After seconds", withHeader(adobe429, "Retry-After", "120"), Transient, "http_429", 429, 2 * time.Minute},
		{"429 Retry-After date", withHeader(reply{status: 429}, "Retry-After", testNow.Add(45*time.Second).Format(http.TimeFormat)), Transient, "http_429", 429, 45 * time.Second},
		{"429 Retry-After date in the past", withHeader(reply{status: 429}, "Retry-After", testNow.Add(-time.Hour).Format(http.TimeFormat)), Transient, "http_429", 429, 0},
		{"429 Retry-After garbage", withHeader(reply{status: 429}, "Retry-After", "soon"), Transient, "http_429", 429, 0},
		{"429 Retry-After huge", withHeader(reply{status: 429}, "Retry-After", "99999999999999"), Transient, "http_429", 429, 24 * time.Hour},
		{"429 without Retry-After", reply{status: 429}, Transient, "http_429", 429, 0},
		{"408", reply{status: 408}, Transient, "http_408", 408, 0},
		{"200 without access_token", tokenReply(map[string]any{"token_type": "bearer", "expires_in": 60}), Transient, "bad_response", 200, 0},
		{"200 HTML", html(200), Transient, "bad_response", 200, 0},
		// x/oauth2 rejects a JSON expires_in that is not an integer, so the
		// whole response is unusable.
		{"200 with fractional expires_in", tokenReply(map[string]any{"access_token": "a", "expires_in": 3600.5}), Transient, "bad_response", 200, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(seen) reply { return tc.resp })
			_, err := newClient(t, testConfig(srv.URL)).Refresh(t.Context(), "rt-1")
			e := asError(t, err)
			if e.Kind != tc.wantKind || e.Code != tc.wantCode || e.StatusCode != tc.wantStatus || e.RetryAfter != tc.wantRetry {
				t.Fatalf("got %v/%q/%d/retry %v (%v); want %v/%q/%d/retry %v",
					e.Kind, e.Code, e.StatusCode, e.RetryAfter, err, tc.wantKind, tc.wantCode, tc.wantStatus, tc.wantRetry)
			}
			if IsPermanent(err) != (tc.wantKind == Permanent) || IsTransient(err) != (tc.wantKind == Transient) {
				t.Fatalf("IsPermanent %v IsTransient %v for %v", IsPermanent(err), IsTransient(err), tc.wantKind)
			}
			wrapped := fmt.Errorf("refresher: %w", err)
			if IsPermanent(wrapped) != IsPermanent(err) || IsTransient(wrapped) != IsTransient(err) {
				t.Fatal("classification lost through wrapping")
			}
		})
	}
}

// TestTransportFailures covers failures without a complete HTTP answer.
func TestTransportFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	cases := []struct {
		name       string
		handler    func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
		url        string // instead of the test server
		httpClient *http.Client
		ctx        func(t *testing.T, received <-chan struct{}) context.Context
		wantCode   string                   // "" means the caller's own cancellation
		wantIs     error                    // errors.Is target
		check      func(*testing.T, *Error) // extra checks
	}{
		{
			name:     "connection refused",
			url:      closedURL,
			wantCode: "network",
		},
		{
			name: "connection dropped before an answer",
			handler: func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = conn.Close()
				}
			},
			wantCode: "network",
		},
		{
			name: "connection dropped in the middle of the body",
			handler: func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(`{"access_token":"at-`))
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			},
			wantCode: "network",
		},
		{
			name: "HTTP client timeout",
			handler: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			},
			httpClient: &http.Client{Timeout: 50 * time.Millisecond},
			wantCode:   "timeout",
		},
		{
			name: "caller's deadline expires in flight",
			handler: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			},
			ctx: func(t *testing.T, _ <-chan struct{}) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantCode: "timeout",
			wantIs:   context.DeadlineExceeded,
		},
		{
			name: "caller's deadline already passed",
			ctx: func(t *testing.T, _ <-chan struct{}) context.Context {
				ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
				t.Cleanup(cancel)
				return ctx
			},
			wantCode: "timeout",
			wantIs:   context.DeadlineExceeded,
		},
		{
			name: "caller cancels in flight",
			handler: func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			},
			ctx: func(t *testing.T, received <-chan struct{}) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				go func() {
					select {
					case <-received:
					case <-ctx.Done():
					}
					cancel()
				}()
				t.Cleanup(cancel)
				return ctx
			},
			wantIs: context.Canceled,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			received := make(chan struct{})
			var once sync.Once
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				once.Do(func() { close(received) })
				if tc.handler == nil {
					_, _ = w.Write([]byte(`{"access_token":"at-1"}`))
					return
				}
				tc.handler(w, r, release)
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) }) // runs before srv.Close
			cfg := testConfig(srv.URL)
			if tc.url != "" {
				cfg.TokenURL = tc.url
			}
			cfg.HTTPClient = tc.httpClient
			ctx := t.Context()
			if tc.ctx != nil {
				ctx = tc.ctx(t, received)
			}

			_, err := newClient(t, cfg).Refresh(ctx, "rt-1")
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) is false", err, tc.wantIs)
			}
			if tc.wantCode == "" {
				if IsTransient(err) || IsPermanent(err) {
					t.Errorf("cancellation %v classified as transient or permanent", err)
				}
				return
			}
			e := asError(t, err)
			if e.Kind != Transient || e.Code != tc.wantCode || e.StatusCode != 0 {
				t.Errorf("got %v/%q/%d (%v); want transient %q", e.Kind, e.Code, e.StatusCode, err, tc.wantCode)
			}
			if strings.Contains(err.Error(), "rt-1") {
				t.Errorf("error carries the refresh token: %v", err)
			}
		})
	}
}

// TestSecretsNeverInErrors uses a token endpoint that echoes every secret it
// was sent, plus an access token, into its error responses.
func TestSecretsNeverInErrors(t *testing.T) {
	const (
		refreshToken = "rt-0123456789abcdef-REFRESH/+="
		code         = "code-0123456789abcdef-CODE"
		leakedAccess = "at-0123456789abcdef-ACCESS"
	)
	verifier := NewVerifier()
	known := []string{refreshToken, code, verifier, testSecret, leakedAccess}

	// echo is everything the request carried, as the server saw it.
	echo := func(s seen) string {
		return fmt.Sprintf("refresh=%s code=%s verifier=%s secret=%s basic=%s:%s",
			s.Form.Get("refresh_token"), s.Form.Get("code"), s.Form.Get("code_verifier"),
			s.Form.Get("client_secret"), s.BasicUser, s.BasicPass)
	}
	// echoAccess also quotes an access token that the body carries as
	// access_token, the only way the client can know it is one.
	echoAccess := func(s seen) string { return echo(s) + " access=" + leakedAccess }
	responses := []struct {
		name    string
		respond func(s seen) reply
	}{
		{"JSON error_description", func(s seen) reply {
			return jsonReply(400, map[string]any{"error": "invalid_grant", "error_description": echoAccess(s), "access_token": leakedAccess})
		}},
		{"secret as the error code", func(s seen) reply {
			return jsonReply(400, map[string]any{"error": s.Form.Get("refresh_token") + s.Form.Get("code") + s.Form.Get("client_secret") + s.BasicPass, "error_description": echo(s)})
		}},
		{"access token as the error code", func(s seen) reply {
			return jsonReply(400, map[string]any{"error": leakedAccess, "error_description": echoAccess(s), "access_token": leakedAccess})
		}},
		{"URL-encoded echo", func(s seen) reply {
			return jsonReply(401, map[string]any{"error": "invalid_client", "error_description": url.Values{"echo": {echo(s)}}.Encode()})
		}},
		{"form-encoded body", func(s seen) reply {
			return reply{status: 400, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
				body: url.Values{"error": {"invalid_grant"}, "error_description": {echoAccess(s)}, "access_token": {leakedAccess}}.Encode()}
		}},
		{"secret across the truncation point", func(s seen) reply {
			// Exactly 12 characters of the first secret fit before the cut:
			// truncating before redacting would leak them.
			pad := strings.Repeat("x", maxDescriptionRunes-12)
			var first string
			for _, v := range []string{s.Form.Get("refresh_token"), s.Form.Get("code"), s.Form.Get("client_secret"), s.BasicPass} {
				if v != "" {
					first = v
					break
				}
			}
			return jsonReply(400, map[string]any{"error": "invalid_grant", "error_description": pad + first + " " + echo(s)})
		}},
		{"5xx HTML page echoing the request", func(s seen) reply {
			return reply{status: 502, header: map[string]string{"Content-Type": "text/html"}, body: "<pre>" + echoAccess(s) + "</pre>"}
		}},
		{"200 without access token echoing", func(s seen) reply {
			return tokenReply(map[string]any{"refresh_token": s.Form.Get("refresh_token"), "error_description": echoAccess(s)})
		}},
	}
	grants := []struct {
		name string
		call func(ctx context.Context, c *Client) (Token, error)
	}{
		{"refresh", func(ctx context.Context, c *Client) (Token, error) { return c.Refresh(ctx, refreshToken) }},
		{"exchange", func(ctx context.Context, c *Client) (Token, error) {
			return c.Exchange(ctx, code, verifier, "https://broker.example.com/cb")
		}},
		{"client_credentials", func(ctx context.Context, c *Client) (Token, error) { return c.ClientCredentials(ctx) }},
	}
	for _, style := range []AuthStyle{AuthStyleBasic, AuthStyleForm, AuthStyleAuto} {
		for _, resp := range responses {
			for _, g := range grants {
				t.Run(string(style)+"/"+resp.name+"/"+g.name, func(t *testing.T) {
					srv := newFakeServer(t, resp.respond)
					cfg := testConfig(srv.URL)
					cfg.AuthStyle = style
					_, err := g.call(t.Context(), newClient(t, cfg))
					if err == nil {
						t.Fatal("no error")
					}
					e := asError(t, err)
					text := strings.Join([]string{
						err.Error(), fmt.Sprintf("%v %+v %#v %q", err, err, err, err),
						e.Code, e.Description, fmt.Sprintf("%+v", *e),
					}, "\n")
					for _, s := range known {
						for _, form := range []string{s, url.QueryEscape(s), s[:12]} {
							if strings.Contains(text, form) {
								t.Fatalf("error text contains a secret (%q):\n%s", form, text)
							}
						}
					}
					if strings.Contains(resp.name, "description") && !strings.Contains(e.Description, redacted) {
						t.Errorf("description %q lost its redacted content entirely", e.Description)
					}
				})
			}
		}
	}
}

func TestDescriptionSanitised(t *testing.T) {
	long := strings.Repeat("é", 500)
	srv := newFakeServer(t, func(seen) reply {
		return jsonReply(400, map[string]any{"error": "invalid_grant", "error_description": "line1\nline2\x1b[31m " + long})
	})
	_, err := newClient(t, testConfig(srv.URL)).Refresh(t.Context(), "rt-1")
	e := asError(t, err)
	if strings.ContainsAny(e.Description, "\n\x1b") {
		t.Errorf("control characters kept: %q", e.Description)
	}
	if n := len([]rune(e.Description)); n > maxDescriptionRunes+1 {
		t.Errorf("description is %d runes, want at most %d", n, maxDescriptionRunes+1)
	}
}

func TestErrorString(t *testing.T) {
	cases := []struct {
		err  *Error
		want string
	}{
		{&Error{Kind: Permanent, Code: "invalid_grant", StatusCode: 400, Description: "Refresh token expired"},
			"token endpoint: invalid_grant (HTTP 400): Refresh token expired"},
		{&Error{Kind: Transient, Code: "http_429", StatusCode: 429, RetryAfter: 30 * time.Second},
			"token endpoint: http_429 (HTTP 429) (retry after 30s)"},
		{&Error{Kind: Transient, Code: "network", Description: "dial tcp: connection refused"},
			"token endpoint: network: dial tcp: connection refused"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	if Transient.String() != "transient" || Permanent.String() != "permanent" {
		t.Errorf("Kind strings %q %q", Transient, Permanent)
	}
}

func TestPreconditions(t *testing.T) {
	srv := newFakeServer(t, func(seen) reply { return okToken() })
	c := newClient(t, testConfig(srv.URL))
	if _, err := c.Refresh(t.Context(), ""); !IsPermanent(err) || asError(t, err).Code != "no_refresh_token" {
		t.Errorf("Refresh(\"\") = %v, want permanent no_refresh_token", err)
	}
	if _, err := c.Exchange(t.Context(), "", "v", ""); !IsPermanent(err) || asError(t, err).Code != "no_code" {
		t.Errorf("Exchange with no code = %v, want permanent no_code", err)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests sent for invalid calls", n)
	}
}

func TestNewValidates(t *testing.T) {
	ok := testConfig("https://login.example.com/token")
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings; none means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"loopback http", func(c *Config) { c.TokenURL = "http://127.0.0.1:9/token" }, nil},
		{"localhost http", func(c *Config) { c.TokenURL = "http://localhost:9/token" }, nil},
		{"remote http allowed explicitly", func(c *Config) { c.TokenURL = "http://ims.internal/token"; c.AllowInsecureHTTP = true }, nil},
		{"no secret (public client)", func(c *Config) { c.ClientSecret = "" }, nil},
		{"no auth URL", func(c *Config) { c.AuthURL = "" }, nil},
		{"no token URL", func(c *Config) { c.TokenURL = "" }, []string{"TokenURL: required"}},
		{"relative token URL", func(c *Config) { c.TokenURL = "/token" }, []string{"TokenURL"}},
		{"remote http", func(c *Config) { c.TokenURL = "http://ims.example.com/token" }, []string{"TokenURL", "loopback"}},
		{"ftp", func(c *Config) { c.TokenURL = "ftp://ims.example.com/token" }, []string{"TokenURL", "scheme"}},
		{"userinfo", func(c *Config) { c.TokenURL = "https://u:" + testSecret + "@ims.example.com/token" }, []string{"TokenURL"}},
		{"bad auth URL", func(c *Config) { c.AuthURL = "http://login.example.com/authorize" }, []string{"AuthURL"}},
		{"no client id", func(c *Config) { c.ClientID = " " }, []string{"ClientID"}},
		{"bad style", func(c *Config) { c.AuthStyle = "jwt" }, []string{"AuthStyle"}},
		{"bad scope", func(c *Config) { c.Scopes = []string{"openid", "a b", ""} }, []string{"Scopes[1]", "Scopes[2]"}},
		{"negative default expiry", func(c *Config) { c.DefaultExpiresIn = -time.Second }, []string{"DefaultExpiresIn"}},
		{"every problem at once", func(c *Config) { c.TokenURL = ""; c.ClientID = ""; c.AuthStyle = "x" }, []string{"TokenURL", "ClientID", "AuthStyle"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			_, err := New(cfg)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted an invalid config")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Errorf("error %v carries no *FieldError", err)
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), url.QueryEscape(testSecret)) {
				t.Errorf("error contains the client secret: %v", err)
			}
		})
	}
}
