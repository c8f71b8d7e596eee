package fakeadobe

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// defaultLoginScope is the scope of refresh tokens from IssueRefreshToken.
const defaultLoginScope = "openid,AdobeID,offline_access,read_organizations,additional_info.projectedProductContext"

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`

	lifetime time.Duration
}

// oauthError is an RFC 6749 error answer. desc never contains a token or a
// secret.
type oauthError struct {
	status int
	code   string
	desc   string
}

func invalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

func invalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", desc}
}

// serveToken serves /ims/token/v3 (millis false) and /ims/token/v1 (millis
// true: expires_in in milliseconds).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, millis bool) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		s.countToken("")
		h.Set("Allow", http.MethodPost)
		s.tokenError(w, &oauthError{http.StatusMethodNotAllowed, "invalid_request", "the token endpoint only accepts POST"})
		return
	}
	form, perr := parseTokenForm(w, r)
	if perr != nil {
		s.countToken("")
		s.tokenError(w, perr)
		return
	}
	grant := form.Get("grant_type")
	latency := s.countToken(grant)
	if !sleepCtx(r.Context(), latency) {
		return // the client went away
	}
	if f, ok := s.take(&s.tokenFault); ok {
		s.writeTokenFault(w, f.status)
		return
	}
	if oerr := s.authenticateClient(r, form); oerr != nil {
		if oerr.status == http.StatusUnauthorized && r.Header.Get("Authorization") != "" {
			h.Set("WWW-Authenticate", `Basic realm="ims"`)
		}
		s.tokenError(w, oerr)
		return
	}
	var (
		resp *tokenResponse
		oerr *oauthError
	)
	switch grant {
	case "":
		oerr = invalidRequest("grant_type is required")
	case "authorization_code":
		resp, oerr = s.grantAuthorizationCode(form)
	case "refresh_token":
		resp, oerr = s.grantRefreshToken(form)
	case "client_credentials":
		resp = s.grantClientCredentials()
	default:
		oerr = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code, refresh_token or client_credentials"}
	}
	if oerr != nil {
		s.tokenError(w, oerr)
		return
	}
	resp.ExpiresIn = expiresIn(resp.lifetime, millis)
	if f, ok := s.take(&s.dropFault); ok {
		if f.status == 0 {
			s.countTokenError("connection_aborted")
			panic(http.ErrAbortHandler) // net/http closes the connection without a response
		}
		s.writeTokenFault(w, f.status)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// countToken counts a token-endpoint call and returns the latency to apply.
func (s *Server) countToken(grant string) time.Duration {
	if grant == "" {
		grant = "none"
	}
	if len(grant) > 64 {
		grant = grant[:64]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.TokenCalls[grant]++
	return s.latency
}

func (s *Server) countTokenError(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.TokenErrors[code]++
}

func (s *Server) tokenError(w http.ResponseWriter, e *oauthError) {
	s.countTokenError(e.code)
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

func (s *Server) take(f *fault) (fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.take()
}

func (s *Server) writeTokenFault(w http.ResponseWriter, status int) {
	switch {
	case status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		s.tokenError(w, &oauthError{status, "too_many_requests", "too many requests, retry after 1 second (injected by fakeadobe)"})
	case status == http.StatusUnauthorized:
		s.tokenError(w, invalidClient("client authentication failed (injected by fakeadobe)"))
	case status >= 400 && status < 500:
		s.tokenError(w, &oauthError{status, "invalid_request", "invalid request (injected by fakeadobe)"})
	default:
		if status < 500 || status > 599 {
			status = http.StatusInternalServerError
		}
		s.tokenError(w, &oauthError{status, "server_error", "the server encountered an internal error (injected by fakeadobe)"})
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// parseTokenForm reads the form body strictly: form content type, body
// only (never the URL query), no repeated parameters.
func parseTokenForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("malformed form body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			if len(k) > 40 {
				k = k[:40]
			}
			return nil, invalidRequest(fmt.Sprintf("parameter %q is repeated", k))
		}
	}
	return r.PostForm, nil
}

// authenticateClient accepts client_secret_basic or client_secret_post, not
// both.
func (s *Server) authenticateClient(r *http.Request, form url.Values) *oauthError {
	var id, secret string
	if r.Header.Get("Authorization") != "" {
		bid, bsecret, ok := r.BasicAuth()
		if !ok {
			return invalidClient("unsupported Authorization header: use Basic (client_secret_basic) or client_secret_post")
		}
		var err1, err2 error
		// RFC 6749 2.3.1: id and secret are form-urlencoded before base64.
		id, err1 = url.QueryUnescape(bid)
		secret, err2 = url.QueryUnescape(bsecret)
		if err1 != nil || err2 != nil {
			return invalidClient("malformed Basic credentials")
		}
		if form.Has("client_secret") {
			return invalidRequest("use client_secret_basic or client_secret_post, not both")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return invalidClient("client_id in the body does not match the Basic credentials")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if id == "" {
			return invalidClient("client authentication required: client_secret_basic or client_secret_post")
		}
		if secret == "" {
			return invalidClient("missing client_secret parameter")
		}
	}
	if id != s.clientID {
		return invalidClient("invalid client_id parameter")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret)) != 1 {
		return invalidClient("invalid client_secret parameter")
	}
	return nil
}

func (s *Server) grantAuthorizationCode(form url.Values) (*tokenResponse, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, invalidRequest("code is required")
	}
	redirect := form.Get("redirect_uri")
	if redirect == "" {
		return nil, invalidRequest("redirect_uri is required")
	}
	verifier := form.Get("code_verifier")

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	c := s.codes[code]
	switch {
	case c == nil:
		return nil, invalidGrant("authorization code is invalid")
	case c.used:
		return nil, invalidGrant("authorization code has already been used")
	case !now.Before(c.expires):
		return nil, invalidGrant("authorization code has expired")
	}
	c.used = true // single use, even if the checks below fail
	if c.clientID != s.clientID {
		return nil, invalidGrant("authorization code was issued to another client")
	}
	if redirect != c.redirectURI {
		return nil, invalidGrant("redirect_uri does not match the one given at authorize")
	}
	if desc := checkPKCE(c, verifier); desc != "" {
		return nil, invalidGrant(desc)
	}
	tok, life := s.newAccessLocked(now)
	resp := &tokenResponse{AccessToken: tok, TokenType: "bearer", lifetime: life}
	if hasScope(c.scope, "offline_access") {
		resp.RefreshToken = s.newRefreshLocked(now.Add(s.refreshLifetime), c.scope)
	}
	return resp, nil
}

func (s *Server) grantRefreshToken(form url.Values) (*tokenResponse, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, invalidRequest("refresh_token is required")
	}
	scope := form.Get("scope")

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	t := s.refresh[rt]
	switch {
	case t == nil:
		return nil, invalidGrant("refresh token is invalid")
	case t.revoked && t.rotated:
		return nil, invalidGrant("refresh token has already been used: refresh tokens rotate, use the one returned by the last refresh")
	case t.revoked:
		return nil, invalidGrant("refresh token has been revoked")
	case !now.Before(t.deadline):
		return nil, invalidGrant("refresh token has expired")
	}
	for _, sc := range splitScope(scope) {
		if !hasScope(t.scope, sc) {
			if len(sc) > 80 {
				sc = sc[:80]
			}
			return nil, &oauthError{http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q was not granted at login", sc)}
		}
	}
	tok, life := s.newAccessLocked(now)
	resp := &tokenResponse{AccessToken: tok, TokenType: "bearer", lifetime: life}
	if s.fixed {
		resp.RefreshToken = rt
	} else {
		t.revoked, t.rotated = true, true
		resp.RefreshToken = s.newRefreshLocked(t.deadline, t.scope)
	}
	return resp, nil
}

func (s *Server) grantClientCredentials() *tokenResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, life := s.newAccessLocked(s.now())
	return &tokenResponse{AccessToken: tok, TokenType: "bearer", lifetime: life}
}

func checkPKCE(c *authCode, verifier string) string {
	if c.challenge == "" {
		if verifier != "" {
			return "code_verifier sent, but the authorize request had no code_challenge"
		}
		return ""
	}
	if verifier == "" {
		return "code_verifier is required: the authorize request had a code_challenge"
	}
	if !validPKCEString(verifier) {
		return "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]"
	}
	got := verifier
	if c.method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		got = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(c.challenge)) != 1 {
		return "code_verifier does not match the code_challenge"
	}
	return ""
}

// validPKCEString checks RFC 7636's syntax for code_verifier and
// code_challenge.
func validPKCEString(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// splitScope splits Adobe's comma-separated scopes (spaces also accepted).
func splitScope(scope string) []string {
	return strings.FieldsFunc(scope, func(r rune) bool { return r == ',' || r == ' ' })
}

func hasScope(scope, want string) bool {
	for _, s := range splitScope(scope) {
		if s == want {
			return true
		}
	}
	return false
}

// serveAuthorize approves at once: 302 to redirect_uri with code and state.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "authorize only accepts GET"})
		return
	}
	q := r.URL.Query()
	clientID := q.Get("client_id")
	if clientID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "client_id is required"})
		return
	}
	if clientID != s.clientID {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client", "error_description": "unknown client_id"})
		return
	}
	redirectURI := q.Get("redirect_uri")
	u, err := url.Parse(redirectURI)
	if redirectURI == "" || err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "redirect_uri must be an absolute URL without a fragment"})
		return
	}
	state := q.Get("state")
	redirect := func(params map[string]string) {
		v := u.Query()
		for k, p := range params {
			v.Set(k, p)
		}
		if state != "" {
			v.Set("state", state)
		}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) { redirect(map[string]string{"error": code, "error_description": desc}) }

	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge == "" && method != "" {
		fail("invalid_request", "code_challenge_method given without code_challenge")
		return
	}
	if challenge != "" {
		if method == "" {
			method = "plain" // RFC 7636 4.3
		}
		if method != "S256" && method != "plain" {
			fail("invalid_request", "code_challenge_method must be S256 or plain")
			return
		}
		if !validPKCEString(challenge) {
			fail("invalid_request", "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]")
			return
		}
	}
	s.mu.Lock()
	code := s.newCodeLocked(&authCode{
		clientID:    clientID,
		redirectURI: redirectURI,
		scope:       q.Get("scope"),
		challenge:   challenge,
		method:      method,
		expires:     s.now().Add(AuthorizationCodeLifetime),
	})
	s.mu.Unlock()
	redirect(map[string]string{"code": code})
}
