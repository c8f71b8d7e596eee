package apiproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tokenbroker/tokenbroker/internal/fingerprint"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors of the proxy. Each is wrapped with a detail that names no token and
// no query value.
var (
	// ErrNotAllowed means the proxy refused to send the request: a method,
	// path, header or size that the caller may not use.
	ErrNotAllowed = errors.New("request not allowed")
	// ErrUpstream means the upstream could not be reached or its answer could
	// not be read: transport errors, timeouts, refused redirects, an answer
	// larger than Options.MaxResponseBody.
	ErrUpstream = errors.New("upstream error")
	// ErrBadTarget means the connection's configured Target cannot be used:
	// a base URL that is not an absolute http(s) URL, or fixed headers that
	// are malformed or that the proxy sets itself. It is a configuration
	// problem, not the caller's.
	ErrBadTarget = errors.New("bad target configuration")
)

// Defaults of Options.
const (
	DefaultMaxRequestBody  = 8 << 20
	DefaultMaxResponseBody = 64 << 20
	DefaultMaxRetryAfter   = 10 * time.Second
)

// Credential is what the proxy needs of a token.
type Credential struct {
	AccessToken string
	// TokenType is the OAuth token type; empty or "bearer" in any case. The
	// proxy always sends "Bearer".
	TokenType  string
	Generation uint64
}

// Tokens is implemented by the broker.
type Tokens interface {
	Token(ctx context.Context, connection string) (Credential, error)
	// Invalidate reports generation as rejected and returns a newer credential (or an error).
	Invalidate(ctx context.Context, connection string, generation uint64, reason string) (Credential, error)
}

// Target is the connection's API as configured.
type Target struct {
	// BaseURL is the API's root, e.g. "https://analytics.adobe.io"; it may
	// carry a path prefix, e.g. "http://127.0.0.1:8181/prefix/".
	BaseURL string
	// APIKey is sent as x-api-key (Adobe: the client id); empty: not sent.
	APIKey string
	// Headers are fixed extra headers from config, e.g.
	// x-proxy-global-company-id. Callers may not set or override them.
	Headers map[string]string
}

// Request is a caller's API call, relative to the Target.
type Request struct {
	// Method is GET, POST, PUT, PATCH or DELETE in any case; empty: GET.
	Method string
	// Path is relative to Target.BaseURL, escaped; see BuildURL.
	Path  string
	Query map[string]string
	// Headers are the caller's extra headers. Authorization,
	// Proxy-Authorization, Host, x-api-key, Cookie, Content-Length, the
	// hop-by-hop headers and the Target's own headers are refused.
	Headers map[string]string
	// Body is sent with POST, PUT and PATCH only.
	Body []byte
}

// Response is the upstream's answer to the last attempt.
type Response struct {
	StatusCode int
	// Header is the upstream's, without hop-by-hop headers and Set-Cookie.
	Header http.Header
	Body   []byte
	// Generation is that of the credential the last attempt used.
	Generation uint64
	// Attempts is how many requests were sent: 1, or more after a 401
	// (retried once with a new token) or a short 429 (retried once).
	Attempts int
}

// Options configure a Proxy. The zero value is usable.
type Options struct {
	// Client sends the requests. Nil: one built here with timeouts (dial 5s,
	// TLS handshake 5s, response header 30s, overall 60s). In either case the
	// proxy follows at most 3 redirects and only to the same origin (scheme,
	// host and port), so Authorization and x-api-key never reach another
	// origin; a given client's own CheckRedirect runs after that check.
	Client *http.Client
	// MaxRequestBody caps Request.Body; 0: DefaultMaxRequestBody.
	MaxRequestBody int64
	// MaxResponseBody caps the answer's body; 0: DefaultMaxResponseBody.
	MaxResponseBody int64
	// MaxRetryAfter is the longest Retry-After of a 429 that is waited out
	// (honouring the context) and retried once; a longer one is returned to
	// the caller. 0: DefaultMaxRetryAfter; negative: a 429 is never retried.
	MaxRetryAfter time.Duration
	// Logger gets one debug record per upstream attempt. Nil: no logs.
	Logger *slog.Logger
}

// Proxy makes API calls with the broker's tokens. It is safe for concurrent
// use.
type Proxy struct {
	tokens        Tokens
	client        *http.Client
	maxReq        int64
	maxResp       int64
	maxRetryAfter time.Duration
	log           *slog.Logger

	// now and wait are the clock, replaced in tests.
	now  func() time.Time
	wait func(ctx context.Context, d time.Duration) error
}

// New returns a Proxy that gets its tokens from tokens.
func New(tokens Tokens, opts Options) *Proxy {
	p := &Proxy{
		tokens:        tokens,
		maxReq:        opts.MaxRequestBody,
		maxResp:       opts.MaxResponseBody,
		maxRetryAfter: opts.MaxRetryAfter,
		log:           opts.Logger,
		now:           time.Now,
		wait:          sleepCtx,
	}
	if p.maxReq <= 0 {
		p.maxReq = DefaultMaxRequestBody
	}
	if p.maxResp <= 0 {
		p.maxResp = DefaultMaxResponseBody
	}
	if p.maxRetryAfter == 0 {
		p.maxRetryAfter = DefaultMaxRetryAfter
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "apiproxy")
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	} else {
		c = *newClient()
	}
	c.CheckRedirect = sameOriginRedirects(c.CheckRedirect)
	p.client = &c
	return p
}

// prepared is a checked request, ready to be sent with any credential.
type prepared struct {
	method string
	path   string // "/" + the relative path, for messages and logs
	url    string
	header http.Header // everything but Authorization
	body   []byte
}

// Call sends req to the connection's API with the connection's token and
// returns the answer, whatever its status. See the package documentation for
// the retries.
func (p *Proxy) Call(ctx context.Context, connection string, target Target, req Request) (Response, error) {
	pr, err := p.prepare(target, req)
	if err != nil {
		return Response{}, err
	}
	cred, err := p.tokens.Token(ctx, connection)
	if err != nil {
		return Response{}, fmt.Errorf("apiproxy: token for connection %q: %w", connection, err)
	}
	var refreshed, waited bool
	for attempt := 1; ; attempt++ {
		resp, err := p.attempt(ctx, connection, pr, cred, attempt)
		if err != nil {
			return Response{}, err
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && !refreshed:
			refreshed = true
			reason := "401 from " + pr.method + " " + pr.path
			next, err := p.tokens.Invalidate(ctx, connection, cred.Generation, reason)
			if err != nil {
				return Response{}, fmt.Errorf("apiproxy: connection %q: generation %d rejected (%s), no newer token: %w",
					connection, cred.Generation, reason, err)
			}
			if next.Generation <= cred.Generation {
				// Invalidate broke its promise: retrying would send the same
				// token again.
				p.log.WarnContext(ctx, "invalidate returned no newer generation",
					"connection", connection, "generation", cred.Generation, "returned", next.Generation)
				return resp, nil
			}
			cred = next
			continue
		case resp.StatusCode == http.StatusTooManyRequests && !waited:
			d, ok := p.retryDelay(ctx, resp.Header)
			if !ok {
				return resp, nil
			}
			waited = true
			if err := p.wait(ctx, d); err != nil {
				return Response{}, &upstreamError{
					msg:    fmt.Sprintf("%v: %s %s: %s while waiting out a 429", ErrUpstream, pr.method, pr.path, ctxClass(err)),
					causes: []error{ErrUpstream, err},
				}
			}
			continue
		}
		return resp, nil
	}
}

// prepare checks everything about the request that does not depend on the
// token, so that a refused request costs the broker nothing.
func (p *Proxy) prepare(target Target, req Request) (*prepared, error) {
	method := strings.ToUpper(req.Method)
	switch method {
	case "":
		method = http.MethodGet
	case http.MethodGet, http.MethodDelete, http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil, fmt.Errorf("%w: method %q (allowed: GET, POST, PUT, PATCH, DELETE)", ErrNotAllowed, req.Method)
	}
	if len(req.Body) > 0 && (method == http.MethodGet || method == http.MethodDelete) {
		return nil, fmt.Errorf("%w: %s with a body", ErrNotAllowed, method)
	}
	if int64(len(req.Body)) > p.maxReq {
		return nil, fmt.Errorf("%w: request body of %d bytes is larger than %d", ErrNotAllowed, len(req.Body), p.maxReq)
	}
	u, err := BuildURL(target.BaseURL, req.Path, req.Query)
	if err != nil {
		return nil, err
	}
	h, err := buildHeader(target, req.Headers)
	if err != nil {
		return nil, err
	}
	if len(req.Body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return &prepared{
		method: method,
		path:   "/" + strings.TrimPrefix(req.Path, "/"),
		url:    u.String(),
		header: h,
		body:   req.Body,
	}, nil
}

// attempt sends one request with cred and reads the answer.
func (p *Proxy) attempt(ctx context.Context, connection string, pr *prepared, cred Credential, n int) (Response, error) {
	auth, err := authorization(connection, cred)
	if err != nil {
		return Response{}, err
	}
	var body io.Reader
	if len(pr.body) > 0 {
		body = bytes.NewReader(pr.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, pr.method, pr.url, body)
	if err != nil {
		// Not shown: it would repeat the URL. BuildURL makes this unreachable.
		return Response{}, fmt.Errorf("%w: %s %s: request cannot be built", ErrUpstream, pr.method, pr.path)
	}
	hreq.Header = pr.header.Clone()
	hreq.Header.Set("Authorization", auth)

	start := p.now()
	resp, err := p.client.Do(hreq)
	if err != nil {
		e := transportError(ctx, pr, err, "")
		p.logAttempt(ctx, connection, pr, cred, n, 0, p.now().Sub(start), e.class)
		return Response{}, e
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body, resp.ContentLength, p.maxResp)
	if err != nil {
		var e *upstreamError
		if errors.Is(err, errTooLarge) {
			e = &upstreamError{
				msg:    fmt.Sprintf("%v: %s %s: response larger than %d bytes", ErrUpstream, pr.method, pr.path, p.maxResp),
				causes: []error{ErrUpstream},
				class:  "response too large",
			}
		} else {
			e = transportError(ctx, pr, err, "reading the response: ")
		}
		p.logAttempt(ctx, connection, pr, cred, n, resp.StatusCode, p.now().Sub(start), e.class)
		return Response{}, e
	}
	p.logAttempt(ctx, connection, pr, cred, n, resp.StatusCode, p.now().Sub(start), "")
	return Response{
		StatusCode: resp.StatusCode,
		Header:     responseHeader(resp.Header),
		Body:       b,
		Generation: cred.Generation,
		Attempts:   n,
	}, nil
}

func (p *Proxy) logAttempt(ctx context.Context, connection string, pr *prepared, cred Credential, n, status int, d time.Duration, errClass string) {
	if !p.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("connection", connection),
		slog.String("method", pr.method),
		slog.String("path", pr.path),
		slog.Int("status", status),
		slog.Int("attempt", n),
		slog.Duration("duration", d),
		slog.Uint64("generation", cred.Generation),
		slog.String("token_fp", fingerprint.Of(cred.AccessToken)),
	}
	if errClass != "" {
		attrs = append(attrs, slog.String("error", errClass))
	}
	p.log.LogAttrs(ctx, slog.LevelDebug, "upstream call", attrs...)
}

// authorization is the Authorization header for cred.
func authorization(connection string, cred Credential) (string, error) {
	if cred.TokenType != "" && !strings.EqualFold(cred.TokenType, "bearer") {
		return "", fmt.Errorf("apiproxy: connection %q: generation %d has token type %q, not bearer",
			connection, cred.Generation, cred.TokenType)
	}
	if !isToken68(cred.AccessToken) {
		return "", fmt.Errorf("apiproxy: connection %q: generation %d (fingerprint %s) is not a usable bearer token",
			connection, cred.Generation, fingerprint.Of(cred.AccessToken))
	}
	return "Bearer " + cred.AccessToken, nil
}

// isToken68 reports whether s is an RFC 6750 b64token.
func isToken68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		switch c {
		case '-', '.', '_', '~', '+', '/':
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// retryDelay is how long to wait before retrying a 429, and whether to.
func (p *Proxy) retryDelay(ctx context.Context, h http.Header) (time.Duration, bool) {
	if p.maxRetryAfter < 0 {
		return 0, false
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 || secs > int64(p.maxRetryAfter/time.Second) {
			return 0, false
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(p.now()), 0)
	} else {
		return 0, false
	}
	if d > p.maxRetryAfter {
		return 0, false
	}
	if dl, ok := ctx.Deadline(); ok && p.now().Add(d).After(dl) {
		return 0, false // the retry could not finish in time: let the caller decide
	}
	return d, true
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var (
	errTooLarge         = errors.New("response too large")
	errLongerThanLength = errors.New("body longer than its Content-Length")
)

// readBody reads at most limit bytes of r. A known length is allocated once,
// so a large answer costs about its size.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	if length > limit {
		return nil, errTooLarge
	}
	if length >= 0 {
		buf := make([]byte, length)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		// The transport stops at Content-Length; check in case it did not.
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 {
			return nil, errLongerThanLength
		}
		return buf, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}
