package fakeadobe

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is an injectable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	fa    *Server
	ts    *httptest.Server
	c     *http.Client
	clock *clock
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clk := newClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	fa := New(opts)
	ts := httptest.NewServer(fa)
	t.Cleanup(ts.Close)
	c := ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &env{t: t, fa: fa, ts: ts, c: c, clock: clk}
}

type authMode int

const (
	authBasic authMode = iota
	authPost
	authNone
)

type tokenResp struct {
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`

	status int
	header http.Header
	raw    string
}

func (e *env) token(path string, form url.Values, mode authMode) tokenResp {
	e.t.Helper()
	return e.tokenWith(path, form, mode, e.fa.ClientID(), e.fa.ClientSecret())
}

func (e *env) tokenWith(path string, form url.Values, mode authMode, id, secret string) tokenResp {
	e.t.Helper()
	form = cloneValues(form)
	if mode == authPost {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mode == authBasic {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return e.doToken(req)
}

func (e *env) doToken(req *http.Request) tokenResp {
	e.t.Helper()
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var tr tokenResp
	if err := json.Unmarshal(b, &tr); err != nil {
		e.t.Fatalf("token response is not JSON: %v: %q", err, b)
	}
	tr.status, tr.header, tr.raw = resp.StatusCode, resp.Header, string(b)
	return tr
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func (e *env) refresh(rt string) tokenResp {
	e.t.Helper()
	return e.token(TokenPathV3, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, authBasic)
}

func (e *env) clientCredentials() tokenResp {
	e.t.Helper()
	tr := e.token(TokenPathV3, url.Values{"grant_type": {"client_credentials"}}, authBasic)
	if tr.status != http.StatusOK {
		e.t.Fatalf("client_credentials: %d %s", tr.status, tr.raw)
	}
	return tr
}

type apiResp struct {
	status int
	header http.Header
	body   string
}

func (e *env) api(method, path, token, apiKey string, body string, hdr map[string]string) apiResp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if apiKey != "" {
		req.Header.Set("x-api-key", apiKey)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return apiResp{resp.StatusCode, resp.Header, string(b)}
}

func (e *env) get(path, token string) apiResp {
	e.t.Helper()
	return e.api(http.MethodGet, path, token, e.fa.ClientID(), "", nil)
}

func (e *env) control(path string) apiResp {
	e.t.Helper()
	resp, err := e.c.Post(e.ts.URL+path, "", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return apiResp{resp.StatusCode, resp.Header, string(b)}
}

// authorize runs /ims/authorize/v2 and returns the redirect Location.
func (e *env) authorize(q url.Values) (int, *url.URL) {
	e.t.Helper()
	resp, err := e.c.Get(e.ts.URL + AuthorizePath + "?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := resp.Location()
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, loc
}

func jsonEq(t *testing.T, got string, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("not JSON: %v: %q", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("body\n got %s\nwant %s", gb, wb)
	}
}

const (
	redirectURI = "https://app.example.test/callback"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk.abcdefghij"
)

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestClientAuthentication(t *testing.T) {
	e := newEnv(t, Options{})
	cc := url.Values{"grant_type": {"client_credentials"}}
	tests := []struct {
		name       string
		build      func() *http.Request
		wantStatus int
		wantError  string
	}{
		{"basic", func() *http.Request { return e.formReq(cc, authBasic, DefaultClientID, DefaultClientSecret) }, 200, ""},
		{"post", func() *http.Request { return e.formReq(cc, authPost, DefaultClientID, DefaultClientSecret) }, 200, ""},
		{"basic wrong secret", func() *http.Request { return e.formReq(cc, authBasic, DefaultClientID, "nope") }, 401, "invalid_client"},
		{"post wrong secret", func() *http.Request { return e.formReq(cc, authPost, DefaultClientID, "nope") }, 401, "invalid_client"},
		{"basic wrong id", func() *http.Request { return e.formReq(cc, authBasic, "other", DefaultClientSecret) }, 401, "invalid_client"},
		{"post missing secret", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultClientID}}, authNone, "", "")
		}, 401, "invalid_client"},
		{"no credentials", func() *http.Request { return e.formReq(cc, authNone, "", "") }, 401, "invalid_client"},
		{"both methods", func() *http.Request {
			r := e.formReq(cc, authPost, DefaultClientID, DefaultClientSecret)
			r.SetBasicAuth(DefaultClientID, DefaultClientSecret)
			return r
		}, 400, "invalid_request"},
		{"bearer header", func() *http.Request {
			r := e.formReq(cc, authNone, "", "")
			r.Header.Set("Authorization", "Bearer x")
			return r
		}, 401, "invalid_client"},
		{"credentials in the URL are ignored", func() *http.Request {
			r := e.formReq(cc, authNone, "", "")
			r.URL.RawQuery = url.Values{"client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret}}.Encode()
			return r
		}, 401, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := e.doToken(tc.build())
			if tr.status != tc.wantStatus || tr.Error != tc.wantError {
				t.Fatalf("got %d %q, want %d %q (%s)", tr.status, tr.Error, tc.wantStatus, tc.wantError, tr.raw)
			}
			if strings.Contains(tr.raw, DefaultClientSecret) {
				t.Fatalf("response leaks the secret: %s", tr.raw)
			}
			if tc.wantStatus == 200 && (tr.AccessToken == "" || tr.TokenType != "bearer") {
				t.Fatalf("bad success body %s", tr.raw)
			}
		})
	}
}

func (e *env) formReq(form url.Values, mode authMode, id, secret string) *http.Request {
	form = cloneValues(form)
	if mode == authPost {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+TokenPathV3, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mode == authBasic {
		req.SetBasicAuth(id, secret)
	}
	return req
}

func TestBasicAuthIsFormURLEncoded(t *testing.T) {
	e := newEnv(t, Options{ClientID: "id with:colon", ClientSecret: "s3cr+t/="})
	tr := e.token(TokenPathV3, url.Values{"grant_type": {"client_credentials"}}, authBasic)
	if tr.status != 200 {
		t.Fatalf("got %d %s", tr.status, tr.raw)
	}
}

func TestTokenRequestValidation(t *testing.T) {
	e := newEnv(t, Options{})
	tests := []struct {
		name       string
		build      func() *http.Request
		wantStatus int
		wantError  string
	}{
		{"GET", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, e.ts.URL+TokenPathV3, nil)
			return r
		}, 405, "invalid_request"},
		{"JSON body", func() *http.Request {
			r := e.formReq(url.Values{"grant_type": {"client_credentials"}}, authBasic, DefaultClientID, DefaultClientSecret)
			r.Header.Set("Content-Type", "application/json")
			return r
		}, 400, "invalid_request"},
		{"missing grant_type", func() *http.Request { return e.formReq(url.Values{}, authBasic, DefaultClientID, DefaultClientSecret) }, 400, "invalid_request"},
		{"unsupported grant_type", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"password"}}, authBasic, DefaultClientID, DefaultClientSecret)
		}, 400, "unsupported_grant_type"},
		{"refresh without refresh_token", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"refresh_token"}}, authBasic, DefaultClientID, DefaultClientSecret)
		}, 400, "invalid_request"},
		{"code without code", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {redirectURI}}, authBasic, DefaultClientID, DefaultClientSecret)
		}, 400, "invalid_request"},
		{"code without redirect_uri", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"authorization_code"}, "code": {"fac_x"}}, authBasic, DefaultClientID, DefaultClientSecret)
		}, 400, "invalid_request"},
		{"repeated parameter", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"client_credentials", "client_credentials"}}, authBasic, DefaultClientID, DefaultClientSecret)
		}, 400, "invalid_request"},
		{"unknown refresh token", func() *http.Request {
			return e.formReq(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"frt_unknown"}}, authBasic, DefaultClientID, DefaultClientSecret)
		}, 400, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := e.doToken(tc.build())
			if tr.status != tc.wantStatus || tr.Error != tc.wantError {
				t.Fatalf("got %d %q, want %d %q (%s)", tr.status, tr.Error, tc.wantStatus, tc.wantError, tr.raw)
			}
			if tr.ErrorDescription == "" {
				t.Fatalf("no error_description: %s", tr.raw)
			}
		})
	}
}

func TestAuthorizationCodePKCE(t *testing.T) {
	tests := []struct {
		name        string
		scope       string
		challenge   string
		method      string
		verifier    string
		redirect    string
		wantError   string
		wantRefresh bool
	}{
		{name: "S256 good", scope: "openid,AdobeID,offline_access", challenge: s256(verifier), method: "S256", verifier: verifier, wantRefresh: true},
		{name: "S256 bad verifier", scope: "openid,offline_access", challenge: s256(verifier), method: "S256", verifier: strings.Repeat("a", 43), wantError: "invalid_grant"},
		{name: "S256 missing verifier", scope: "offline_access", challenge: s256(verifier), method: "S256", wantError: "invalid_grant"},
		{name: "S256 short verifier", scope: "offline_access", challenge: s256("short"), method: "S256", verifier: "short", wantError: "invalid_grant"},
		{name: "plain good", scope: "offline_access", challenge: verifier, method: "plain", verifier: verifier, wantRefresh: true},
		{name: "plain by default", scope: "offline_access", challenge: verifier, verifier: verifier, wantRefresh: true},
		{name: "verifier without challenge", scope: "offline_access", verifier: verifier, wantError: "invalid_grant"},
		{name: "no PKCE", scope: "openid offline_access", wantRefresh: true},
		{name: "no offline_access, no refresh token", scope: "openid,AdobeID", challenge: s256(verifier), method: "S256", verifier: verifier},
		{name: "wrong redirect_uri", scope: "offline_access", redirect: "https://evil.example.test/cb", wantError: "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			q := url.Values{"client_id": {DefaultClientID}, "redirect_uri": {redirectURI}, "response_type": {"code"}, "scope": {tc.scope}, "state": {"st4te"}}
			if tc.challenge != "" {
				q.Set("code_challenge", tc.challenge)
			}
			if tc.method != "" {
				q.Set("code_challenge_method", tc.method)
			}
			status, loc := e.authorize(q)
			if status != http.StatusFound {
				t.Fatalf("authorize: %d", status)
			}
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
				t.Fatalf("redirected to %s", got)
			}
			if loc.Query().Get("state") != "st4te" || loc.Query().Get("code") == "" {
				t.Fatalf("redirect query %q", loc.RawQuery)
			}
			redirect := redirectURI
			if tc.redirect != "" {
				redirect = tc.redirect
			}
			form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect}}
			if tc.verifier != "" {
				form.Set("code_verifier", tc.verifier)
			}
			tr := e.token(TokenPathV3, form, authPost)
			if tc.wantError != "" {
				if tr.status != 400 || tr.Error != tc.wantError {
					t.Fatalf("got %d %s, want 400 %s", tr.status, tr.raw, tc.wantError)
				}
				return
			}
			if tr.status != 200 || tr.AccessToken == "" || tr.ExpiresIn != 86399 || tr.TokenType != "bearer" {
				t.Fatalf("got %d %s", tr.status, tr.raw)
			}
			if (tr.RefreshToken != "") != tc.wantRefresh {
				t.Fatalf("refresh token present=%v, want %v", tr.RefreshToken != "", tc.wantRefresh)
			}
			if tc.wantRefresh {
				if r := e.refresh(tr.RefreshToken); r.status != 200 {
					t.Fatalf("refresh of the login's token: %d %s", r.status, r.raw)
				}
			}
		})
	}
}

func (e *env) code(extra url.Values) string {
	e.t.Helper()
	q := url.Values{"client_id": {DefaultClientID}, "redirect_uri": {redirectURI}, "response_type": {"code"}, "scope": {"openid,offline_access"}}
	for k, v := range extra {
		q[k] = v
	}
	status, loc := e.authorize(q)
	if status != http.StatusFound || loc.Query().Get("code") == "" {
		e.t.Fatalf("authorize: %d %v", status, loc)
	}
	return loc.Query().Get("code")
}

func TestAuthorizationCodeSingleUseAndExpiry(t *testing.T) {
	e := newEnv(t, Options{})
	exchange := func(code, verifier string) tokenResp {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		return e.token(TokenPathV3, form, authBasic)
	}

	code := e.code(nil)
	if tr := exchange(code, ""); tr.status != 200 {
		t.Fatalf("first use: %d %s", tr.status, tr.raw)
	}
	if tr := exchange(code, ""); tr.status != 400 || tr.Error != "invalid_grant" || strings.Contains(tr.raw, code) {
		t.Fatalf("reuse: %d %s", tr.status, tr.raw)
	}

	// A failed attempt consumes the code too.
	code = e.code(url.Values{"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}})
	if tr := exchange(code, strings.Repeat("b", 50)); tr.Error != "invalid_grant" {
		t.Fatalf("bad verifier: %d %s", tr.status, tr.raw)
	}
	if tr := exchange(code, verifier); tr.Error != "invalid_grant" {
		t.Fatalf("retry after a failed attempt: %d %s", tr.status, tr.raw)
	}

	code = e.code(nil)
	e.clock.Advance(AuthorizationCodeLifetime)
	if tr := exchange(code, ""); tr.Error != "invalid_grant" || !strings.Contains(tr.ErrorDescription, "expired") {
		t.Fatalf("expired code: %d %s", tr.status, tr.raw)
	}
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t, Options{})
	base := func() url.Values {
		return url.Values{"client_id": {DefaultClientID}, "redirect_uri": {redirectURI}, "response_type": {"code"}, "state": {"s"}}
	}
	tests := []struct {
		name       string
		mod        func(url.Values)
		wantStatus int
		wantError  string // in the redirect
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "other") }, 400, ""},
		{"missing client", func(q url.Values) { q.Del("client_id") }, 400, ""},
		{"missing redirect_uri", func(q url.Values) { q.Del("redirect_uri") }, 400, ""},
		{"relative redirect_uri", func(q url.Values) { q.Set("redirect_uri", "/cb") }, 400, ""},
		{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, 302, "unsupported_response_type"},
		{"bad challenge method", func(q url.Values) {
			q.Set("code_challenge", s256(verifier))
			q.Set("code_challenge_method", "S512")
		}, 302, "invalid_request"},
		{"method without challenge", func(q url.Values) { q.Set("code_challenge_method", "S256") }, 302, "invalid_request"},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, 302, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := base()
			tc.mod(q)
			status, loc := e.authorize(q)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d", status, tc.wantStatus)
			}
			if loc != nil {
				if got := loc.Query(); got.Get("error") != tc.wantError || got.Get("state") != "s" || got.Get("code") != "" {
					t.Fatalf("redirect query %q", loc.RawQuery)
				}
			}
		})
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	if !strings.HasPrefix(rt, RefreshTokenPrefix) || strings.HasPrefix(rt, "eyJ") || strings.Contains(rt, ".") {
		t.Fatalf("refresh token does not look opaque: %s", rt)
	}
	first := e.refresh(rt)
	if first.status != 200 || first.RefreshToken == "" || first.RefreshToken == rt || first.ExpiresIn != 86399 {
		t.Fatalf("first refresh: %d %s", first.status, first.raw)
	}
	if !strings.HasPrefix(first.AccessToken, AccessTokenPrefix) || strings.Contains(first.AccessToken, ".") {
		t.Fatalf("access token does not look opaque: %s", first.AccessToken)
	}
	again := e.refresh(rt)
	if again.status != 400 || again.Error != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %s", again.status, again.raw)
	}
	if strings.Contains(again.raw, rt) || strings.Contains(again.raw, first.RefreshToken) {
		t.Fatalf("error leaks a token: %s", again.raw)
	}
	second := e.refresh(first.RefreshToken)
	if second.status != 200 || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh with the rotated token: %d %s", second.status, second.raw)
	}
	if n := e.fa.ValidRefreshTokens(); n != 1 {
		t.Fatalf("ValidRefreshTokens = %d, want 1", n)
	}
	// Old access tokens stay valid until they expire.
	if r := e.get(DiscoveryPath, first.AccessToken); r.status != 200 {
		t.Fatalf("first access token: %d %s", r.status, r.body)
	}
}

func TestFixedRefreshTokens(t *testing.T) {
	e := newEnv(t, Options{FixedRefreshTokens: true})
	rt := e.fa.IssueRefreshToken()
	for i := range 3 {
		tr := e.refresh(rt)
		if tr.status != 200 || tr.RefreshToken != rt {
			t.Fatalf("refresh %d: %d %s", i, tr.status, tr.raw)
		}
	}
}

func TestRefreshTokenDeadlineSurvivesRotation(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	e.clock.Advance(13 * 24 * time.Hour)
	tr := e.refresh(rt)
	if tr.status != 200 {
		t.Fatalf("refresh on day 13: %d %s", tr.status, tr.raw)
	}
	e.clock.Advance(24 * time.Hour)
	tr = e.refresh(tr.RefreshToken)
	if tr.status != 400 || tr.Error != "invalid_grant" || !strings.Contains(tr.ErrorDescription, "expired") {
		t.Fatalf("refresh on day 14 with a token rotated on day 13: %d %s", tr.status, tr.raw)
	}
}

func TestRefreshScope(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	tr := e.token(TokenPathV3, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid,admin"}}, authBasic)
	if tr.status != 400 || tr.Error != "invalid_scope" {
		t.Fatalf("got %d %s", tr.status, tr.raw)
	}
	tr = e.token(TokenPathV3, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid,AdobeID"}}, authBasic)
	if tr.status != 200 {
		t.Fatalf("narrower scope after a rejected one: %d %s", tr.status, tr.raw)
	}
}

func TestExpiresIn(t *testing.T) {
	e := newEnv(t, Options{})
	cc := url.Values{"grant_type": {"client_credentials"}}
	tests := []struct {
		name     string
		lifetime time.Duration
		path     string
		want     int64
	}{
		{"v3 24h", 24 * time.Hour, TokenPathV3, 86399},
		{"v1 24h milliseconds", 24 * time.Hour, TokenPathV1, 86399000},
		{"v3 1h", time.Hour, TokenPathV3, 3599},
		{"v1 1h", time.Hour, TokenPathV1, 3599000},
		{"v3 1s", time.Second, TokenPathV3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.fa.SetTokenLifetime(tc.lifetime)
			tr := e.token(tc.path, cc, authPost)
			if tr.status != 200 || tr.ExpiresIn != tc.want || tr.RefreshToken != "" {
				t.Fatalf("got %d %s, want expires_in %d and no refresh token", tr.status, tr.raw, tc.want)
			}
		})
	}
	// v1 also serves refresh with rotation.
	e.fa.SetTokenLifetime(0)
	tr := e.token(TokenPathV1, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {e.fa.IssueRefreshToken()}}, authBasic)
	if tr.status != 200 || tr.ExpiresIn != 86399000 || tr.RefreshToken == "" {
		t.Fatalf("v1 refresh: %d %s", tr.status, tr.raw)
	}
}

func TestAccessTokenExpiry(t *testing.T) {
	e := newEnv(t, Options{TokenLifetime: time.Hour})
	at := e.clientCredentials().AccessToken
	e.clock.Advance(time.Hour - time.Nanosecond)
	if r := e.get(DiscoveryPath, at); r.status != 200 {
		t.Fatalf("just before expiry: %d %s", r.status, r.body)
	}
	e.clock.Advance(time.Nanosecond)
	r := e.get(DiscoveryPath, at)
	if r.status != 401 {
		t.Fatalf("at expiry: %d %s", r.status, r.body)
	}
	jsonEq(t, r.body, `{"error_code":"401013","message":"Oauth token is not valid"}`)
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, Options{})
	at1, at2 := e.clientCredentials().AccessToken, e.clientCredentials().AccessToken
	if n := e.fa.RevokeAccessTokens(); n != 2 {
		t.Fatalf("RevokeAccessTokens = %d, want 2", n)
	}
	for _, at := range []string{at1, at2} {
		r := e.get(DiscoveryPath, at)
		if r.status != 401 {
			t.Fatalf("revoked token: %d %s", r.status, r.body)
		}
		jsonEq(t, r.body, `{"error_code":"401013","message":"Oauth token is not valid"}`)
	}

	rt := e.fa.IssueRefreshToken()
	if n := e.fa.RevokeRefreshTokens(); n != 1 {
		t.Fatalf("RevokeRefreshTokens = %d, want 1", n)
	}
	if tr := e.refresh(rt); tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("revoked refresh token: %d %s", tr.status, tr.raw)
	}

	// Over HTTP.
	at := e.clientCredentials().AccessToken
	e.fa.IssueRefreshToken()
	r := e.control("/_fake/revoke?what=all")
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	jsonEq(t, r.body, `{"revoked":2}`)
	if r := e.get(DiscoveryPath, at); r.status != 401 {
		t.Fatalf("after HTTP revoke: %d", r.status)
	}
	if r := e.control("/_fake/revoke?what=everything"); r.status != 400 {
		t.Fatalf("bad what: %d", r.status)
	}
}

func TestAPIAuthChecks(t *testing.T) {
	e := newEnv(t, Options{})
	at := e.clientCredentials().AccessToken
	const keyBody = `{"error_code":"403000","message":"Api Key is invalid"}`
	const tokenBody = `{"error_code":"401013","message":"Oauth token is not valid"}`
	tests := []struct {
		name       string
		token, key string
		hdr        map[string]string
		wantStatus int
		wantBody   string
	}{
		{"ok", at, DefaultClientID, nil, 200, ""},
		{"missing api key", at, "", nil, 403, keyBody},
		{"wrong api key", at, "other", nil, 403, keyBody},
		{"missing token", "", DefaultClientID, nil, 401, tokenBody},
		{"unknown token", "fat_nope", DefaultClientID, nil, 401, tokenBody},
		{"basic instead of bearer", "", DefaultClientID, map[string]string{"Authorization": "Basic eDp5"}, 401, tokenBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.api(http.MethodGet, DiscoveryPath, tc.token, tc.key, "", tc.hdr)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantBody != "" {
				jsonEq(t, r.body, tc.wantBody)
			}
		})
	}
}

func TestAnalyticsEndpoints(t *testing.T) {
	e := newEnv(t, Options{})
	at := e.clientCredentials().AccessToken
	key := DefaultClientID
	suitesPath := "/api/" + DefaultCompanyID + "/reportsuites/collections/suites"
	reportsPath := "/api/" + DefaultCompanyID + "/reports"

	r := e.get(DiscoveryPath, at)
	jsonEq(t, r.body, `{"imsUserId":"`+IMSUserID+`","imsOrgs":[{"imsOrgId":"`+IMSOrgID+`","companies":[{"globalCompanyId":"fakecompany","companyName":"Fake Company","apiRateLimitPolicy":"aa_api_tier10_tp","dpc":"pnw"}]}]}`)

	r = e.get(suitesPath, at)
	if r.status != 200 {
		t.Fatalf("suites: %d %s", r.status, r.body)
	}
	jsonEq(t, r.body, `{"content":[{"collectionItemType":"reportsuite","rsid":"fakersid1","name":"Fake Report Suite"}],"totalElements":1,"totalPages":1,"numberOfElements":1,"firstPage":true,"lastPage":true,"sort":null,"size":10,"number":0}`)
	r = e.get(suitesPath+"?limit=5&page=1", at)
	jsonEq(t, r.body, `{"content":[],"totalElements":1,"totalPages":1,"numberOfElements":0,"firstPage":false,"lastPage":true,"sort":null,"size":5,"number":1}`)
	if r = e.get(suitesPath+"?limit=0", at); r.status != 400 {
		t.Fatalf("limit=0: %d", r.status)
	}

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		hdr        map[string]string
		wantStatus int
		wantCode   string
	}{
		{"report", http.MethodPost, reportsPath, `{"rsid":"fakersid1","dimension":"variables/page","metricContainer":{"metrics":[{"columnId":"0","id":"metrics/pageviews"},{"columnId":"1","id":"metrics/visits"}]}}`, nil, 200, ""},
		{"report default dimension", http.MethodPost, reportsPath, `{"rsid":"fakersid1"}`, nil, 200, ""},
		{"report invalid JSON", http.MethodPost, reportsPath, `{"rsid":`, nil, 400, "invalid_request"},
		{"report without rsid", http.MethodPost, reportsPath, `{"dimension":"variables/page"}`, nil, 400, "invalid_request"},
		{"report with GET", http.MethodGet, reportsPath, "", nil, 405, "method_not_allowed"},
		{"wrong company", http.MethodGet, "/api/othercompany/reportsuites/collections/suites", "", nil, 403, "403025"},
		{"company header matches", http.MethodGet, suitesPath, "", map[string]string{"x-proxy-global-company-id": DefaultCompanyID}, 200, ""},
		{"company header differs", http.MethodGet, suitesPath, "", map[string]string{"x-proxy-global-company-id": "othercompany"}, 403, "403025"},
		{"unknown resource", http.MethodGet, "/api/" + DefaultCompanyID + "/segments", "", nil, 404, "resource_not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.api(tc.method, tc.path, at, key, tc.body, tc.hdr)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(r.body), &body); err != nil {
				t.Fatalf("not JSON: %s", r.body)
			}
			if tc.wantCode != "" && body["errorCode"] != tc.wantCode {
				t.Fatalf("errorCode %v, want %s: %s", body["errorCode"], tc.wantCode, r.body)
			}
		})
	}

	r = e.api(http.MethodPost, reportsPath, at, key, `{"rsid":"fakersid1","dimension":"variables/page","metricContainer":{"metrics":[{"columnId":"0","id":"metrics/pageviews"},{"columnId":"1","id":"metrics/visits"}]},"settings":{"limit":2,"page":1}}`, nil)
	var rep struct {
		TotalPages, NumberOfElements, Number, TotalElements int
		FirstPage, LastPage                                 bool
		Columns                                             struct{ ColumnIDs []string }
		Rows                                                []struct {
			ItemID string
			Value  string
			Data   []float64
		}
		SummaryData struct{ Totals, FilteredTotals []float64 }
	}
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.TotalPages != 3 || rep.NumberOfElements != 2 || rep.Number != 1 || rep.TotalElements != reportRows ||
		rep.FirstPage || rep.LastPage || len(rep.Rows) != 2 || len(rep.Rows[0].Data) != 2 ||
		len(rep.Columns.ColumnIDs) != 2 || len(rep.SummaryData.Totals) != 2 || rep.Rows[0].ItemID == "" {
		t.Fatalf("unexpected report %s", r.body)
	}
}

func TestFakeBytes(t *testing.T) {
	e := newEnv(t, Options{})
	at := e.clientCredentials().AccessToken
	for _, n := range []int{0, 5, 12, 13, 100, 1 << 20, 3<<20 + 17} {
		r := e.get("/api/"+DefaultCompanyID+"/_fake/bytes?n="+strconv.Itoa(n), at)
		if r.status != 200 || len(r.body) != n {
			t.Fatalf("n=%d: status %d, %d bytes", n, r.status, len(r.body))
		}
		if n >= 13 && !json.Valid([]byte(r.body)) {
			t.Fatalf("n=%d: not JSON", n)
		}
	}
	if r := e.get("/api/"+DefaultCompanyID+"/_fake/bytes?n=-1", at); r.status != 400 {
		t.Fatalf("n=-1: %d", r.status)
	}
}

func TestFailAPICalls(t *testing.T) {
	e := newEnv(t, Options{})
	at := e.clientCredentials().AccessToken
	tests := []struct {
		name           string
		status         int
		retryAfter     time.Duration
		wantRetryAfter string
		wantBody       string
	}{
		{"429", 429, 3 * time.Second, "3", `{"error_code":"429050","message":"Too many requests"}`},
		{"429 default Retry-After", 429, 0, "1", `{"error_code":"429050","message":"Too many requests"}`},
		{"429 rounds up", 429, 1500 * time.Millisecond, "2", `{"error_code":"429050","message":"Too many requests"}`},
		{"503", 503, 0, "", `{"error_code":"503000","message":"Service Unavailable"}`},
		{"503 with Retry-After", 503, 5 * time.Second, "5", `{"error_code":"503000","message":"Service Unavailable"}`},
		{"401 on a valid token", 401, 0, "", `{"error_code":"401013","message":"Oauth token is not valid"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.fa.FailAPICalls(2, tc.status, tc.retryAfter)
			for i := range 2 {
				r := e.get(DiscoveryPath, at)
				if r.status != tc.status || r.header.Get("Retry-After") != tc.wantRetryAfter {
					t.Fatalf("call %d: %d Retry-After %q", i, r.status, r.header.Get("Retry-After"))
				}
				jsonEq(t, r.body, tc.wantBody)
			}
			if r := e.get(DiscoveryPath, at); r.status != 200 {
				t.Fatalf("after the injected failures: %d %s", r.status, r.body)
			}
		})
	}
}

func TestFailTokenCalls(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	tests := []struct {
		status         int
		wantError      string
		wantRetryAfter string
	}{
		{500, "server_error", ""},
		{502, "server_error", ""},
		{503, "server_error", ""},
		{429, "too_many_requests", "1"},
		{401, "invalid_client", ""},
		{400, "invalid_request", ""},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			e.fa.FailTokenCalls(1, tc.status)
			tr := e.refresh(rt)
			if tr.status != tc.status || tr.Error != tc.wantError || tr.header.Get("Retry-After") != tc.wantRetryAfter {
				t.Fatalf("got %d %s Retry-After %q", tr.status, tr.raw, tr.header.Get("Retry-After"))
			}
		})
	}
	// Injected failures happen before the grant: the refresh token is intact.
	tr := e.refresh(rt)
	if tr.status != 200 {
		t.Fatalf("refresh after injected failures: %d %s", tr.status, tr.raw)
	}
	st := e.fa.Stats()
	if st.TokenCalls["refresh_token"] != len(tests)+1 || st.TokenErrors["server_error"] != 3 || st.TokenErrors["too_many_requests"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDropTokenResponses(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	e.fa.DropTokenResponses(1, http.StatusGatewayTimeout)
	tr := e.refresh(rt)
	if tr.status != http.StatusGatewayTimeout || tr.Error != "server_error" {
		t.Fatalf("dropped response: %d %s", tr.status, tr.raw)
	}
	// The grant happened: the used token is revoked and the new one unknown
	// to the client.
	if tr := e.refresh(rt); tr.Error != "invalid_grant" || !strings.Contains(tr.ErrorDescription, "already been used") {
		t.Fatalf("retry with the used token: %d %s", tr.status, tr.raw)
	}
	if n := e.fa.ValidRefreshTokens(); n != 1 {
		t.Fatalf("ValidRefreshTokens = %d, want 1 (the lost one)", n)
	}

	// Status 0 closes the connection without a response.
	rt = e.fa.IssueRefreshToken()
	e.fa.DropTokenResponses(1, 0)
	req := e.formReq(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, authBasic, DefaultClientID, DefaultClientSecret)
	resp, err := e.c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("want a transport error, got %d", resp.StatusCode)
	}
	if e.fa.Stats().TokenErrors["connection_aborted"] != 1 {
		t.Fatalf("stats %+v", e.fa.Stats())
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	at := e.refresh(rt).AccessToken
	e.refresh(rt)                                                                    // invalid_grant
	e.token(TokenPathV3, url.Values{"grant_type": {"client_credentials"}}, authNone) // invalid_client
	e.get(DiscoveryPath, at)
	e.get(DiscoveryPath, "fat_bad")
	e.api(http.MethodGet, DiscoveryPath, at, "", "", nil)

	want := Stats{
		TokenCalls:  map[string]int{"refresh_token": 2, "client_credentials": 1},
		TokenErrors: map[string]int{"invalid_grant": 1, "invalid_client": 1},
		APICalls:    3,
		APIStatus:   map[int]int{200: 1, 401: 1, 403: 1},
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(e.fa.Stats())
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("Stats\n got %s\nwant %s", gotJSON, wantJSON)
	}
	r := e.get("/_fake/stats", "")
	jsonEq(t, r.body, `{"token_calls":{"refresh_token":2,"client_credentials":1},"token_errors":{"invalid_grant":1,"invalid_client":1},"api_calls":3,"api_status":{"200":1,"401":1,"403":1}}`)

	// Stats returns a copy.
	st := e.fa.Stats()
	st.TokenCalls["refresh_token"] = 100
	if e.fa.Stats().TokenCalls["refresh_token"] != 2 {
		t.Fatal("Stats shares its maps")
	}

	if r := e.control("/_fake/reset-stats"); r.status != 200 {
		t.Fatalf("reset-stats: %d", r.status)
	}
	jsonEq(t, e.get("/_fake/stats", "").body, `{"token_calls":{},"token_errors":{},"api_calls":0,"api_status":{}}`)
}

func TestControlEndpoints(t *testing.T) {
	e := newEnv(t, Options{})

	r := e.control("/_fake/login")
	var login struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(r.body), &login); err != nil || r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	if tr := e.refresh(login.RefreshToken); tr.status != 200 {
		t.Fatalf("refresh with the login's token: %d %s", tr.status, tr.raw)
	}

	if r := e.control("/_fake/fail?endpoint=token&n=1&status=503"); r.status != 200 {
		t.Fatalf("fail token: %d %s", r.status, r.body)
	}
	if tr := e.token(TokenPathV3, url.Values{"grant_type": {"client_credentials"}}, authBasic); tr.status != 503 {
		t.Fatalf("after fail token: %d", tr.status)
	}
	at := e.clientCredentials().AccessToken

	if r := e.control("/_fake/fail?endpoint=api&n=1&status=429&retry_after=2s"); r.status != 200 {
		t.Fatalf("fail api: %d %s", r.status, r.body)
	}
	if r := e.get(DiscoveryPath, at); r.status != 429 || r.header.Get("Retry-After") != "2" {
		t.Fatalf("after fail api: %d %q", r.status, r.header.Get("Retry-After"))
	}

	if r := e.control("/_fake/token-lifetime?d=1h"); r.status != 200 {
		t.Fatalf("token-lifetime: %d %s", r.status, r.body)
	}
	if tr := e.clientCredentials(); tr.ExpiresIn != 3599 {
		t.Fatalf("expires_in after token-lifetime=1h: %d", tr.ExpiresIn)
	}
	if r := e.control("/_fake/latency?d=0s"); r.status != 200 {
		t.Fatalf("latency: %d %s", r.status, r.body)
	}

	for _, p := range []string{
		"/_fake/fail?endpoint=token&n=1&status=200",
		"/_fake/fail?endpoint=nope&n=1&status=500",
		"/_fake/fail?endpoint=api&n=x&status=500",
		"/_fake/fail?endpoint=api&n=1&status=429&retry_after=soon",
		"/_fake/latency?d=fast",
	} {
		if r := e.control(p); r.status != 400 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := e.control("/_fake/nope"); r.status != 404 {
		t.Fatalf("unknown control: %d", r.status)
	}
	if r := e.get("/_fake/login", ""); r.status != 405 {
		t.Fatalf("GET login: %d", r.status)
	}
}

// TestConcurrentRefreshSameToken: many clients refreshing the same refresh
// token at once; exactly one wins.
func TestConcurrentRefreshSameToken(t *testing.T) {
	e := newEnv(t, Options{})
	rt := e.fa.IssueRefreshToken()
	const n = 200
	start := make(chan struct{})
	results := make(chan tokenResp, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req := e.formReq(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, authBasic, DefaultClientID, DefaultClientSecret)
			resp, err := e.c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var tr tokenResp
			if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
				errs <- err
				return
			}
			tr.status = resp.StatusCode
			results <- tr
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ok, rejected := 0, 0
	for tr := range results {
		switch {
		case tr.status == 200:
			ok++
		case tr.status == 400 && tr.Error == "invalid_grant":
			rejected++
		default:
			t.Fatalf("unexpected answer %d %+v", tr.status, tr)
		}
	}
	if ok != 1 || rejected != n-1 {
		t.Fatalf("%d succeeded and %d were rejected, want 1 and %d", ok, rejected, n-1)
	}
	st := e.fa.Stats()
	if st.TokenCalls["refresh_token"] != n || st.TokenErrors["invalid_grant"] != n-1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConcurrentMixed hammers every knob at once, for the race detector.
func TestConcurrentMixed(t *testing.T) {
	e := newEnv(t, Options{})
	// do runs a request without the env helpers, which may call t.Fatal.
	do := func(req *http.Request) (int, []byte) {
		resp, err := e.c.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Error(err)
		}
		return resp.StatusCode, b
	}
	refresh := func(rt string) (string, bool) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+TokenPathV3, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(DefaultClientID, DefaultClientSecret)
		status, b := do(req)
		var tr tokenResp
		if status != 200 || json.Unmarshal(b, &tr) != nil {
			return "", false
		}
		return tr.RefreshToken, true
	}
	get := func(path, token string) {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("x-api-key", DefaultClientID)
		do(req)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := e.fa.IssueRefreshToken()
			for range 20 {
				switch i % 4 {
				case 0:
					if next, ok := refresh(rt); ok {
						rt = next
					} else {
						rt = e.fa.IssueRefreshToken()
					}
				case 1:
					get(DiscoveryPath, e.fa.IssueAccessToken())
				case 2:
					e.fa.RevokeAccessTokens()
					e.fa.RevokeRefreshTokens()
					e.fa.FailAPICalls(1, 503, 0)
					e.fa.FailTokenCalls(1, 502)
					e.fa.DropTokenResponses(1, 502)
					e.fa.SetLatency(0)
					e.fa.SetTokenLifetime(time.Hour)
					e.fa.ResetStats()
				case 3:
					_ = e.fa.Stats()
					_ = e.fa.ValidRefreshTokens()
					get("/_fake/stats", "")
					e.clock.Advance(time.Second)
				}
			}
		}()
	}
	wg.Wait()
}

// TestLatencyHonoursCancellation: a client that gives up during the injected
// latency does not leave the handler sleeping (ts.Close would block).
func TestLatencyHonoursCancellation(t *testing.T) {
	e := newEnv(t, Options{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req := e.formReq(url.Values{"grant_type": {"client_credentials"}}, authBasic, DefaultClientID, DefaultClientSecret)
		resp, err := e.c.Do(req.WithContext(ctx))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, func() bool { return e.fa.Stats().TokenCalls["client_credentials"] == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUnknownPath(t *testing.T) {
	e := newEnv(t, Options{})
	if r := e.get("/nope", ""); r.status != 404 {
		t.Fatalf("status %d", r.status)
	}
}

// TestSweep: expired and revoked entries are forgotten, so long runs do not
// grow without bound, and forgotten tokens are still refused.
func TestSweep(t *testing.T) {
	e := newEnv(t, Options{TokenLifetime: time.Minute})
	oldAT := e.fa.IssueAccessToken()
	oldRT := e.fa.IssueRefreshToken()
	e.fa.RevokeRefreshTokens()
	for range minSweep {
		e.fa.IssueAccessToken()
		e.fa.IssueRefreshToken()
	}
	e.fa.RevokeRefreshTokens()
	e.clock.Advance(time.Minute)
	for range minSweep {
		e.fa.IssueAccessToken()
		e.fa.IssueRefreshToken()
	}
	e.fa.mu.Lock()
	nAccess, nRefresh := len(e.fa.access), len(e.fa.refresh)
	e.fa.mu.Unlock()
	if nAccess > minSweep || nRefresh > minSweep {
		t.Fatalf("not swept: %d access, %d refresh tokens kept", nAccess, nRefresh)
	}
	if r := e.get(DiscoveryPath, oldAT); r.status != 401 {
		t.Fatalf("swept access token: %d", r.status)
	}
	if tr := e.refresh(oldRT); tr.status != 400 || tr.Error != "invalid_grant" {
		t.Fatalf("swept refresh token: %d %s", tr.status, tr.raw)
	}
}
