package fakeadobe

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults and fixed identities of the fake.
const (
	DefaultClientID             = "fake-client-id"
	DefaultClientSecret         = "fake-client-secret"
	DefaultCompanyID            = "fakecompany"
	DefaultTokenLifetime        = 24 * time.Hour
	DefaultRefreshTokenLifetime = 14 * 24 * time.Hour
	// AuthorizationCodeLifetime is how long a code from /ims/authorize/v2 may
	// be exchanged.
	AuthorizationCodeLifetime = 10 * time.Minute

	// ReportSuiteID is the one report suite the fake knows.
	ReportSuiteID = "fakersid1"
	// IMSOrgID and IMSUserID are what /discovery/me reports.
	IMSOrgID  = "FAKE0RG0000000000000000A@AdobeOrg"
	IMSUserID = "FAKEUSER000000000000000A@AdobeID"

	// Prefixes of the opaque tokens the fake mints.
	AccessTokenPrefix  = "fat_"
	RefreshTokenPrefix = "frt_"
	CodePrefix         = "fac_"
)

// Paths served by the fake.
const (
	TokenPathV3   = "/ims/token/v3"
	TokenPathV1   = "/ims/token/v1"
	AuthorizePath = "/ims/authorize/v2"
	DiscoveryPath = "/discovery/me"
	APIPrefix     = "/api/"
	ControlPrefix = "/_fake/"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// ClientID and ClientSecret are the only client credentials accepted.
	// Defaults: DefaultClientID, DefaultClientSecret.
	ClientID, ClientSecret string
	// CompanyID is the global company id of /api/{company}/... Default
	// DefaultCompanyID.
	CompanyID string
	// TokenLifetime is the access token lifetime. Default 24h. expires_in is
	// the lifetime in whole seconds less one (86399 for 24h) when the lifetime
	// is at least 2s, else the whole seconds.
	TokenLifetime time.Duration
	// RefreshTokenLifetime counts from the authorization-code login (or
	// IssueRefreshToken); rotation keeps the original deadline. Default 14 days.
	RefreshTokenLifetime time.Duration
	// Latency is added to every token-endpoint call.
	Latency time.Duration
	// Now is the clock. Default time.Now. Latency is always real time.
	Now func() time.Time
	// FixedRefreshTokens turns rotation off: a refresh returns the same
	// refresh token and does not revoke it. Default false (rotate).
	FixedRefreshTokens bool
}

// Stats counts what the fake has seen since New or the last ResetStats.
type Stats struct {
	// TokenCalls counts every token-endpoint call (v1 and v3) by grant_type,
	// including failed and injected-failure calls. Calls without a readable
	// grant_type count under "none".
	TokenCalls map[string]int `json:"token_calls"`
	// TokenErrors counts token-endpoint errors by OAuth error code
	// (invalid_grant, invalid_client, server_error, too_many_requests, ...).
	TokenErrors map[string]int `json:"token_errors"`
	// APICalls counts every Analytics API call (/discovery/me and /api/...).
	APICalls int `json:"api_calls"`
	// APIStatus counts Analytics API responses by HTTP status.
	APIStatus map[int]int `json:"api_status"`
}

type accessToken struct {
	expires time.Time
}

type refreshToken struct {
	deadline time.Time
	scope    string
	revoked  bool
	rotated  bool // revoked because it was used
}

type authCode struct {
	clientID    string
	redirectURI string
	scope       string
	challenge   string
	method      string
	expires     time.Time
	used        bool
}

type fault struct {
	n          int
	status     int
	retryAfter time.Duration
}

// take consumes one injected failure, if any.
func (f *fault) take() (fault, bool) {
	if f.n <= 0 {
		return fault{}, false
	}
	f.n--
	return *f, true
}

// Server is the fake. Create it with New.
type Server struct {
	clientID, clientSecret string
	companyID              string
	refreshLifetime        time.Duration
	fixed                  bool
	now                    func() time.Time

	mu            sync.Mutex
	latency       time.Duration
	tokenLifetime time.Duration
	access        map[string]accessToken
	refresh       map[string]*refreshToken
	codes         map[string]*authCode
	accessSweep   int
	refreshSweep  int
	codeSweep     int
	tokenFault    fault
	apiFault      fault
	dropFault     fault
	stats         Stats
}

const minSweep = 1024

// New returns a Server with opts, defaults filled in.
func New(opts Options) *Server {
	s := &Server{
		clientID:        opts.ClientID,
		clientSecret:    opts.ClientSecret,
		companyID:       opts.CompanyID,
		refreshLifetime: opts.RefreshTokenLifetime,
		fixed:           opts.FixedRefreshTokens,
		now:             opts.Now,
		latency:         opts.Latency,
		tokenLifetime:   opts.TokenLifetime,
		access:          make(map[string]accessToken),
		refresh:         make(map[string]*refreshToken),
		codes:           make(map[string]*authCode),
		accessSweep:     minSweep,
		refreshSweep:    minSweep,
		codeSweep:       minSweep,
	}
	if s.clientID == "" {
		s.clientID = DefaultClientID
	}
	if s.clientSecret == "" {
		s.clientSecret = DefaultClientSecret
	}
	if s.companyID == "" {
		s.companyID = DefaultCompanyID
	}
	if s.refreshLifetime <= 0 {
		s.refreshLifetime = DefaultRefreshTokenLifetime
	}
	if s.tokenLifetime <= 0 {
		s.tokenLifetime = DefaultTokenLifetime
	}
	if s.latency < 0 {
		s.latency = 0
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.resetStatsLocked()
	return s
}

// ClientID returns the accepted client id (also the required x-api-key).
func (s *Server) ClientID() string { return s.clientID }

// ClientSecret returns the accepted client secret.
func (s *Server) ClientSecret() string { return s.clientSecret }

// CompanyID returns the global company id.
func (s *Server) CompanyID() string { return s.companyID }

// ServeHTTP serves the IMS endpoints (/ims/token/v3, /ims/token/v1,
// /ims/authorize/v2), the Analytics API (/discovery/me, /api/{company}/...)
// and the control endpoints under /_fake/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == TokenPathV3:
		s.serveToken(w, r, false)
	case p == TokenPathV1:
		s.serveToken(w, r, true)
	case p == AuthorizePath:
		s.serveAuthorize(w, r)
	case p == DiscoveryPath || strings.HasPrefix(p, APIPrefix):
		s.serveAPI(w, r)
	case strings.HasPrefix(p, ControlPrefix):
		s.serveControl(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such endpoint on the fake Adobe"})
	}
}

// IssueRefreshToken mints a refresh token as if a user had just logged in
// with the offline_access scope. Its deadline is now + RefreshTokenLifetime.
func (s *Server) IssueRefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newRefreshLocked(s.now().Add(s.refreshLifetime), defaultLoginScope)
}

// IssueAccessToken mints a valid access token without a token-endpoint call
// (not counted in Stats), for tests of the API side.
func (s *Server) IssueAccessToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, _ := s.newAccessLocked(s.now())
	return tok
}

// RevokeAccessTokens revokes every access token and returns how many of them
// were still valid.
func (s *Server) RevokeAccessTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, t := range s.access {
		if now.Before(t.expires) {
			n++
		}
	}
	clear(s.access)
	s.accessSweep = minSweep
	return n
}

// RevokeRefreshTokens revokes every refresh token and returns how many of
// them were still valid.
func (s *Server) RevokeRefreshTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, t := range s.refresh {
		if !t.revoked && now.Before(t.deadline) {
			n++
		}
		t.revoked = true
	}
	return n
}

// ValidRefreshTokens returns how many refresh tokens are currently usable.
// With rotation on, one login yields exactly one usable token at a time.
func (s *Server) ValidRefreshTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, t := range s.refresh {
		if !t.revoked && now.Before(t.deadline) {
			n++
		}
	}
	return n
}

// FailTokenCalls makes the next n token-endpoint calls fail with status
// before anything else is checked: 5xx answers {"error":"server_error"}, 429
// answers {"error":"too_many_requests"} with Retry-After: 1, 401
// invalid_client, other 4xx invalid_request. It replaces any earlier
// injection; n <= 0 clears it. Injected failures count in Stats.
func (s *Server) FailTokenCalls(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenFault = fault{n: n, status: status}
}

// DropTokenResponses makes the next n token-endpoint calls that succeed
// lose their answer: the grant is carried out in full (tokens minted, the
// used refresh token revoked) but the client gets status with
// {"error":"server_error"} instead, or, with status 0, a connection closed
// without a response. This is the "IMS rotated the token but the answer never
// arrived" fault. It replaces any earlier injection; n <= 0 clears it.
// Closing the connection panics with http.ErrAbortHandler, which net/http
// handles; do not use status 0 with a bare httptest.ResponseRecorder.
func (s *Server) DropTokenResponses(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropFault = fault{n: n, status: status}
}

// FailAPICalls makes the next n Analytics API calls answer status before
// any check: 429 with {"error_code":"429050","message":"Too many requests"},
// 401 with the 401013 body, 403 with a 403025 body, others with an Adobe
// gateway-style body. Retry-After (whole seconds, at least 1) is sent with
// 429 always and with other statuses when retryAfter > 0. It replaces any
// earlier injection; n <= 0 clears it.
func (s *Server) FailAPICalls(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiFault = fault{n: n, status: status, retryAfter: retryAfter}
}

// SetLatency sets the delay added to every token-endpoint call.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(d, 0)
}

// SetTokenLifetime sets the lifetime of access tokens issued from now on;
// d <= 0 restores the default.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		d = DefaultTokenLifetime
	}
	s.tokenLifetime = d
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		TokenCalls:  maps.Clone(s.stats.TokenCalls),
		TokenErrors: maps.Clone(s.stats.TokenErrors),
		APICalls:    s.stats.APICalls,
		APIStatus:   maps.Clone(s.stats.APIStatus),
	}
}

// ResetStats zeroes the counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetStatsLocked()
}

func (s *Server) resetStatsLocked() {
	s.stats = Stats{
		TokenCalls:  map[string]int{},
		TokenErrors: map[string]int{},
		APIStatus:   map[int]int{},
	}
}

// expiresIn is the expires_in a token endpoint reports for lifetime d.
func expiresIn(d time.Duration, millis bool) int64 {
	secs := int64(d / time.Second)
	if secs >= 2 {
		secs--
	}
	if millis {
		return secs * 1000
	}
	return secs
}

func (s *Server) newAccessLocked(now time.Time) (string, time.Duration) {
	tok := newToken(AccessTokenPrefix)
	s.access[tok] = accessToken{expires: now.Add(s.tokenLifetime)}
	if len(s.access) >= s.accessSweep {
		for k, t := range s.access {
			if !now.Before(t.expires) {
				delete(s.access, k)
			}
		}
		s.accessSweep = max(2*len(s.access), minSweep)
	}
	return tok, s.tokenLifetime
}

func (s *Server) newRefreshLocked(deadline time.Time, scope string) string {
	tok := newToken(RefreshTokenPrefix)
	s.refresh[tok] = &refreshToken{deadline: deadline, scope: scope}
	if len(s.refresh) >= s.refreshSweep {
		now := s.now()
		for k, t := range s.refresh {
			if t.revoked || !now.Before(t.deadline) {
				delete(s.refresh, k)
			}
		}
		s.refreshSweep = max(2*len(s.refresh), minSweep)
	}
	return tok
}

func (s *Server) newCodeLocked(c *authCode) string {
	tok := newToken(CodePrefix)
	s.codes[tok] = c
	if len(s.codes) >= s.codeSweep {
		now := s.now()
		for k, c := range s.codes {
			if c.used || !now.Before(c.expires) {
				delete(s.codes, k)
			}
		}
		s.codeSweep = max(2*len(s.codes), minSweep)
	}
	return tok
}

// accessValid reports whether tok is a known, unrevoked, unexpired access token.
func (s *Server) accessValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[tok]
	return ok && s.now().Before(t.expires)
}

// newToken returns prefix + base64url(32 random bytes): opaque, not a JWT.
func newToken(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "fakeadobe: cannot encode response", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
