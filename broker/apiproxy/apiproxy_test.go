package apiproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tokenbroker/tokenbroker/internal/fingerprint"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// secretMark is in every token (and in query values that must not leak):
// no error and no log line may contain it.
const secretMark = "SECRET"

func tokenFor(gen uint64) string {
	return fmt.Sprintf("%s-eyJhbGciOiJSUzI1NiJ9.gen%d-x_y", secretMark, gen)
}

// fakeTokens hands out tokens of a growing generation.
type fakeTokens struct {
	mu            sync.Mutex
	gen           uint64
	tokenType     string
	token         string // if set, every credential carries it instead of tokenFor
	tokenErr      error
	invalidateErr error
	stuck         bool // Invalidate does not advance the generation
	tokenCalls    int
	invalidations []invalidation
}

type invalidation struct {
	connection string
	generation uint64
	reason     string
}

func newTokens() *fakeTokens { return &fakeTokens{gen: 1} }

func (f *fakeTokens) cred() Credential {
	tok := f.token
	if tok == "" {
		tok = tokenFor(f.gen)
	}
	return Credential{AccessToken: tok, TokenType: f.tokenType, Generation: f.gen}
}

func (f *fakeTokens) Token(ctx context.Context, connection string) (Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenCalls++
	if f.tokenErr != nil {
		return Credential{}, f.tokenErr
	}
	return f.cred(), nil
}

func (f *fakeTokens) Invalidate(ctx context.Context, connection string, generation uint64, reason string) (Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidations = append(f.invalidations, invalidation{connection, generation, reason})
	if f.invalidateErr != nil {
		return Credential{}, f.invalidateErr
	}
	if !f.stuck && generation >= f.gen {
		f.gen = generation + 1
	}
	return f.cred(), nil
}

func (f *fakeTokens) snapshot() (tokenCalls int, inv []invalidation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenCalls, slices.Clone(f.invalidations)
}

var _ Tokens = (*fakeTokens)(nil)

// seen is a request as the upstream got it.
type seen struct {
	method, path, rawPath, rawQuery string
	header                          http.Header
	body                            []byte
}

// upstream is an httptest server that records requests and answers with
// handle; n counts requests from 1.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newUpstream(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header.Clone(), body})
		n := len(u.reqs)
		u.mu.Unlock()
		handle(w, r, n)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

func ok(w http.ResponseWriter, r *http.Request, n int) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

func jsonError(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

const (
	body401013      = `{"error_code":"401013","message":"Oauth token is not valid"}`
	bodyInvalidTok  = `{"errorCode":"invalid_token","errorDescription":"The access token expired"}`
	body429050      = `{"error_code":"429050","message":"Too many requests"}`
	testConnection  = "adobe-prod"
	testAPIKey      = "client-id-1"
	testCompanyID   = "company1"
	companyIDHeader = "X-Proxy-Global-Company-Id"
)

func targetFor(base string) Target {
	return Target{BaseURL: base, APIKey: testAPIKey, Headers: map[string]string{"x-proxy-global-company-id": testCompanyID}}
}

func newProxy(t *testing.T, tokens Tokens, opts Options) *Proxy {
	t.Helper()
	p := New(tokens, opts)
	t.Cleanup(p.client.CloseIdleConnections)
	return p
}

// call runs p.Call and checks that an error, if any, carries no secret.
func call(t *testing.T, p *Proxy, ctx context.Context, target Target, req Request) (Response, error) {
	t.Helper()
	resp, err := p.Call(ctx, testConnection, target, req)
	noSecret(t, err)
	return resp, err
}

func noSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err)} {
		if strings.Contains(s, secretMark) {
			t.Errorf("error carries a secret: %s", s)
		}
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCallSendsHeaders(t *testing.T) {
	tests := []struct {
		name       string
		tokenType  string
		target     func(base string) Target
		req        Request
		wantPath   string
		wantQuery  string
		wantHeader map[string]string // "" means: absent
		wantBody   string
	}{
		{
			name:      "defaults",
			req:       Request{Path: "/api/company1/reports", Query: map[string]string{"rsid": "r1", "limit": "5"}},
			wantPath:  "/api/company1/reports",
			wantQuery: "limit=5&rsid=r1",
			wantHeader: map[string]string{
				"Authorization": "Bearer " + tokenFor(1), "X-Api-Key": testAPIKey, companyIDHeader: testCompanyID,
				"Accept": "application/json", "Content-Type": "", "Cookie": "",
			},
		},
		{
			name:       "body gets a JSON content type",
			req:        Request{Method: "POST", Path: "api/company1/reports", Body: []byte(`{"rsid":"r1"}`)},
			wantPath:   "/api/company1/reports",
			wantHeader: map[string]string{"Content-Type": "application/json", "Accept": "application/json"},
			wantBody:   `{"rsid":"r1"}`,
		},
		{
			name: "caller headers kept",
			req: Request{Method: "put", Path: "/api/company1/segments/s1", Body: []byte("a,b"),
				Headers: map[string]string{"content-type": "text/csv", "accept": "text/csv", "X-Request-Id": "r-1", "Accept-Language": "en"}},
			wantPath:   "/api/company1/segments/s1",
			wantHeader: map[string]string{"Content-Type": "text/csv", "Accept": "text/csv", "X-Request-Id": "r-1", "Accept-Language": "en"},
			wantBody:   "a,b",
		},
		{
			name:       "token type bearer",
			tokenType:  "bearer",
			req:        Request{Path: "/discovery/me"},
			wantPath:   "/discovery/me",
			wantHeader: map[string]string{"Authorization": "Bearer " + tokenFor(1)},
		},
		{
			name:       "token type BEARER",
			tokenType:  "BEARER",
			req:        Request{Path: "/discovery/me"},
			wantPath:   "/discovery/me",
			wantHeader: map[string]string{"Authorization": "Bearer " + tokenFor(1)},
		},
		{
			name:       "no API key, no company header",
			target:     func(base string) Target { return Target{BaseURL: base} },
			req:        Request{Path: "/discovery/me", Headers: map[string]string{"x-proxy-global-company-id": "c2"}},
			wantPath:   "/discovery/me",
			wantHeader: map[string]string{"X-Api-Key": "", companyIDHeader: "c2"},
		},
		{
			name:       "base with prefix",
			target:     func(base string) Target { return targetFor(base + "/prefix/") },
			req:        Request{Path: "/api/x%20y"},
			wantPath:   "/prefix/api/x y",
			wantHeader: map[string]string{"X-Api-Key": testAPIKey},
		},
		{
			name: "target accept wins",
			target: func(base string) Target {
				return Target{BaseURL: base, Headers: map[string]string{"Accept": "text/csv"}}
			},
			req:        Request{Path: "/x"},
			wantPath:   "/x",
			wantHeader: map[string]string{"Accept": "text/csv"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, ok)
			tokens := newTokens()
			tokens.tokenType = tc.tokenType
			p := newProxy(t, tokens, Options{})
			target := targetFor(up.URL)
			if tc.target != nil {
				target = tc.target(up.URL)
			}
			resp, err := call(t, p, context.Background(), target, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || string(resp.Body) != `{"ok":true}` || resp.Attempts != 1 || resp.Generation != 1 {
				t.Errorf("response = %d %q attempts %d generation %d", resp.StatusCode, resp.Body, resp.Attempts, resp.Generation)
			}
			reqs := up.requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			wantMethod := strings.ToUpper(tc.req.Method)
			if wantMethod == "" {
				wantMethod = "GET"
			}
			if got.method != wantMethod || got.path != tc.wantPath || got.rawQuery != tc.wantQuery || string(got.body) != tc.wantBody {
				t.Errorf("upstream got %s %s ?%s %q; want %s %s ?%s %q",
					got.method, got.path, got.rawQuery, got.body, wantMethod, tc.wantPath, tc.wantQuery, tc.wantBody)
			}
			for name, want := range tc.wantHeader {
				if v := got.header.Values(name); want == "" && len(v) != 0 || want != "" && !slices.Equal(v, []string{want}) {
					t.Errorf("header %s = %q, want %q", name, v, want)
				}
			}
		})
	}
}

func TestCallRefusesHeaders(t *testing.T) {
	tests := []struct {
		name, header, value, why string
	}{
		{"Authorization", "Authorization", "Bearer x", "Authorization"},
		{"authorization lower case", "authorization", "Bearer x", "authorization"},
		{"Proxy-Authorization", "Proxy-Authorization", "Basic x", "Proxy-Authorization"},
		{"Host", "Host", "evil.example", "Host"},
		{"x-api-key", "x-api-key", "other", "x-api-key"},
		{"X-API-KEY", "X-API-KEY", "other", "X-API-KEY"},
		{"Cookie", "Cookie", "a=b", "Cookie"},
		{"company id set by target", "x-proxy-global-company-id", "other", "x-proxy-global-company-id"},
		{"company id other case", "X-Proxy-Global-Company-ID", "other", "X-Proxy-Global-Company-ID"},
		{"Connection", "Connection", "close", "Connection"},
		{"Keep-Alive", "Keep-Alive", "timeout=5", "Keep-Alive"},
		{"Proxy-Connection", "Proxy-Connection", "keep-alive", "Proxy-Connection"},
		{"TE", "TE", "trailers", "TE"},
		{"Trailer", "Trailer", "X-Foo", "Trailer"},
		{"Transfer-Encoding", "Transfer-Encoding", "chunked", "Transfer-Encoding"},
		{"Upgrade", "Upgrade", "websocket", "Upgrade"},
		{"Content-Length", "Content-Length", "5", "Content-Length"},
		{"empty name", "", "v", "empty name"},
		{"space in name", "X Foo", "v", `"X Foo"`},
		{"colon in name", "X-Foo:", "v", `"X-Foo:"`},
		{"newline in name", "X-Foo\nX-Bar", "v", "header name"},
		{"non-ASCII name", "X-Fé", "v", "header name"},
		{"CRLF in value", "X-Foo", "a\r\nX-Injected: 1", "control character"},
		{"LF in value", "X-Foo", "a\nb", "control character"},
		{"CR in value", "X-Foo", "a\rb", "control character"},
		{"NUL in value", "X-Foo", "a\x00b", "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, ok)
			tokens := newTokens()
			p := newProxy(t, tokens, Options{})
			_, err := call(t, p, context.Background(), targetFor(up.URL),
				Request{Path: "/x", Headers: map[string]string{tc.header: tc.value}})
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("Call with %q = %v; want ErrNotAllowed", tc.header, err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("error %q does not say %s", err, tc.why)
			}
			if tc.value != "" && len(tc.value) > 2 && strings.Contains(err.Error(), tc.value) {
				t.Errorf("error %q shows the header's value", err)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream got %d requests", n)
			}
			if calls, _ := tokens.snapshot(); calls != 0 {
				t.Errorf("Token called %d times for a refused request", calls)
			}
		})
	}

	t.Run("duplicate names", func(t *testing.T) {
		p := newProxy(t, newTokens(), Options{})
		_, err := call(t, p, context.Background(), targetFor("http://127.0.0.1:1"),
			Request{Path: "/x", Headers: map[string]string{"Accept": "a", "accept": "b"}})
		if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("Call = %v; want ErrNotAllowed (twice)", err)
		}
	})
}

func TestCallRefusesTarget(t *testing.T) {
	tests := []struct {
		name   string
		target Target
	}{
		{"Authorization header", Target{BaseURL: "http://127.0.0.1:1", Headers: map[string]string{"Authorization": "x"}}},
		{"x-api-key header", Target{BaseURL: "http://127.0.0.1:1", Headers: map[string]string{"x-api-key": "x"}}},
		{"hop-by-hop header", Target{BaseURL: "http://127.0.0.1:1", Headers: map[string]string{"Connection": "close"}}},
		{"header value with CRLF", Target{BaseURL: "http://127.0.0.1:1", Headers: map[string]string{"X-A": "a\r\nb"}}},
		{"bad header name", Target{BaseURL: "http://127.0.0.1:1", Headers: map[string]string{"X A": "a"}}},
		{"duplicate header", Target{BaseURL: "http://127.0.0.1:1", Headers: map[string]string{"X-A": "a", "x-a": "b"}}},
		{"API key with newline", Target{BaseURL: "http://127.0.0.1:1", APIKey: "k\nx"}},
		{"base not http", Target{BaseURL: "ftp://127.0.0.1:1"}},
		{"base with user info", Target{BaseURL: "http://u:SECRET@127.0.0.1:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tokens := newTokens()
			p := newProxy(t, tokens, Options{})
			_, err := call(t, p, context.Background(), tc.target, Request{Path: "/x"})
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("Call = %v; want ErrBadTarget", err)
			}
			if calls, _ := tokens.snapshot(); calls != 0 {
				t.Errorf("Token called %d times", calls)
			}
		})
	}
}

func TestCallMethods(t *testing.T) {
	tests := []struct {
		method, want string
		body         string
		allowed      bool
	}{
		{"", "GET", "", true},
		{"GET", "GET", "", true},
		{"get", "GET", "", true},
		{"Post", "POST", `{}`, true},
		{"POST", "POST", "", true},
		{"PUT", "PUT", `{}`, true},
		{"patch", "PATCH", `{}`, true},
		{"DELETE", "DELETE", "", true},
		{"GET", "", `{}`, false},
		{"delete", "", `{}`, false},
		{"HEAD", "", "", false},
		{"OPTIONS", "", "", false},
		{"TRACE", "", "", false},
		{"CONNECT", "", "", false},
		{"PROPFIND", "", "", false},
		{"G ET", "", "", false},
		{"GET\r\n", "", "", false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q body %q", tc.method, tc.body), func(t *testing.T) {
			up := newUpstream(t, ok)
			p := newProxy(t, newTokens(), Options{})
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Method: tc.method, Path: "/x", Body: body})
			reqs := up.requests()
			if !tc.allowed {
				if !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("Call = %v; want ErrNotAllowed", err)
				}
				if len(reqs) != 0 {
					t.Errorf("upstream got %d requests", len(reqs))
				}
				return
			}
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("Call = %d, %v", resp.StatusCode, err)
			}
			if len(reqs) != 1 || reqs[0].method != tc.want || string(reqs[0].body) != tc.body {
				t.Errorf("upstream got %+v; want one %s with body %q", reqs, tc.want, tc.body)
			}
		})
	}
}

func TestCallSizes(t *testing.T) {
	const maxReq, maxResp = 16, 1024
	sized := func(n int, chunked bool) func(w http.ResponseWriter, r *http.Request, _ int) {
		return func(w http.ResponseWriter, r *http.Request, _ int) {
			body := bytes.Repeat([]byte("x"), n)
			if chunked {
				w.WriteHeader(200)
				w.(http.Flusher).Flush() // no Content-Length from here on
			} else {
				w.Header().Set("Content-Length", fmt.Sprint(n))
			}
			w.Write(body)
		}
	}
	tests := []struct {
		name     string
		reqBody  int
		handle   func(w http.ResponseWriter, r *http.Request, _ int)
		wantErr  error
		wantSays string
		wantBody int
	}{
		{"request body at cap", maxReq, sized(2, false), nil, "", 2},
		{"request body over cap", maxReq + 1, sized(2, false), ErrNotAllowed, "larger than 16", 0},
		{"response at cap", 0, sized(maxResp, false), nil, "", maxResp},
		{"response over cap", 0, sized(maxResp+1, false), ErrUpstream, "response larger than 1024 bytes", 0},
		{"chunked response at cap", 0, sized(maxResp, true), nil, "", maxResp},
		{"chunked response over cap", 0, sized(maxResp+1, true), ErrUpstream, "response larger than 1024 bytes", 0},
		{"empty response", 0, sized(0, false), nil, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, tc.handle)
			p := newProxy(t, newTokens(), Options{MaxRequestBody: maxReq, MaxResponseBody: maxResp})
			req := Request{Method: "POST", Path: "/x"}
			if tc.reqBody > 0 {
				req.Body = bytes.Repeat([]byte("a"), tc.reqBody)
			}
			resp, err := call(t, p, context.Background(), targetFor(up.URL), req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantSays) {
					t.Fatalf("Call = %v; want %v saying %q", err, tc.wantErr, tc.wantSays)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Body) != tc.wantBody {
				t.Errorf("body is %d bytes, want %d", len(resp.Body), tc.wantBody)
			}
		})
	}
}

// TestReadBodyAllocatesOnce checks that a body of known length costs about
// its size, not the doubling of a growing buffer.
func TestReadBodyAllocatesOnce(t *testing.T) {
	const size = 20 << 20
	src := bytes.Repeat([]byte("x"), size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b, err := readBody(bytes.NewReader(src), size, DefaultMaxResponseBody)
	runtime.ReadMemStats(&after)
	if err != nil || len(b) != size {
		t.Fatalf("readBody = %d bytes, %v", len(b), err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > size+size/8 {
		t.Errorf("reading %d bytes allocated %d", size, got)
	}

	if _, err := readBody(strings.NewReader("abcd"), 3, 10); !errors.Is(err, errLongerThanLength) {
		t.Errorf("body longer than its length: %v", err)
	}
	if _, err := readBody(strings.NewReader("ab"), 3, 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body shorter than its length: %v", err)
	}
	if _, err := readBody(strings.NewReader(""), 11, 10); !errors.Is(err, errTooLarge) {
		t.Errorf("length over the cap: %v", err)
	}
}

func TestCall401RetriedOnce(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		body   string
	}{
		{"gateway 401013", nil, body401013},
		{"service invalid_token", nil, bodyInvalidTok},
		{"WWW-Authenticate invalid_token", map[string]string{"WWW-Authenticate": `Bearer error="invalid_token"`}, ""},
		{"unknown body", nil, `{"error":"something else"}`},
		{"empty body", nil, ""},
	}
	for _, tc := range tests {
		for _, method := range []string{"GET", "POST"} {
			t.Run(tc.name+" "+method, func(t *testing.T) {
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
					if n == 1 {
						for k, v := range tc.header {
							w.Header().Set(k, v)
						}
						jsonError(w, 401, tc.body)
						return
					}
					ok(w, r, n)
				})
				tokens := newTokens()
				p := newProxy(t, tokens, Options{})
				req := Request{Method: method, Path: "api/company1/reports", Query: map[string]string{"q": secretMark}}
				if method == "POST" {
					req.Body = []byte(`{"rsid":"r1"}`)
				}
				resp, err := call(t, p, context.Background(), targetFor(up.URL), req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || resp.Attempts != 2 || resp.Generation != 2 {
					t.Errorf("response %d attempts %d generation %d; want 200, 2, 2", resp.StatusCode, resp.Attempts, resp.Generation)
				}
				reqs := up.requests()
				if len(reqs) != 2 {
					t.Fatalf("upstream got %d requests, want 2", len(reqs))
				}
				for i, want := range []string{tokenFor(1), tokenFor(2)} {
					if got := reqs[i].header.Get("Authorization"); got != "Bearer "+want {
						t.Errorf("attempt %d sent Authorization %q, want the generation %d token", i+1, got, i+1)
					}
					if string(reqs[i].body) != string(req.Body) {
						t.Errorf("attempt %d sent body %q, want %q", i+1, reqs[i].body, req.Body)
					}
				}
				_, inv := tokens.snapshot()
				want := []invalidation{{testConnection, 1, "401 from " + method + " /api/company1/reports"}}
				if !slices.Equal(inv, want) {
					t.Errorf("invalidations = %+v, want %+v", inv, want)
				}
			})
		}
	}
}

func TestCall401Twice(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) { jsonError(w, 401, body401013) })
	tokens := newTokens()
	p := newProxy(t, tokens, Options{})
	resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || resp.Attempts != 2 || resp.Generation != 2 || string(resp.Body) != body401013 {
		t.Errorf("response %d %q attempts %d generation %d; want the second 401", resp.StatusCode, resp.Body, resp.Attempts, resp.Generation)
	}
	if n := len(up.requests()); n != 2 {
		t.Errorf("upstream got %d requests, want 2", n)
	}
	if _, inv := tokens.snapshot(); len(inv) != 1 {
		t.Errorf("invalidations = %+v, want one", inv)
	}
}

func TestCall401InvalidateFails(t *testing.T) {
	errThrottled := errors.New("refresh throttled")
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) { jsonError(w, 401, body401013) })
	tokens := newTokens()
	tokens.invalidateErr = fmt.Errorf("broker: %w", errThrottled)
	p := newProxy(t, tokens, Options{})
	_, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
	if !errors.Is(err, errThrottled) {
		t.Fatalf("Call = %v; want the broker's error", err)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

func TestCall401NoNewerGeneration(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) { jsonError(w, 401, body401013) })
	tokens := newTokens()
	tokens.stuck = true
	p := newProxy(t, tokens, Options{})
	resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || resp.Attempts != 1 || resp.Generation != 1 {
		t.Errorf("response %d attempts %d generation %d; want the first 401", resp.StatusCode, resp.Attempts, resp.Generation)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests: the same token was sent again", n)
	}
}

func TestCallTokenError(t *testing.T) {
	errNeedsReauth := errors.New("credentials were rejected for good")
	up := newUpstream(t, ok)
	tokens := newTokens()
	tokens.tokenErr = fmt.Errorf("broker: %w", errNeedsReauth)
	p := newProxy(t, tokens, Options{})
	_, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
	if !errors.Is(err, errNeedsReauth) {
		t.Fatalf("Call = %v; want the broker's error", err)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
}

func TestCallNotRetried(t *testing.T) {
	tests := []struct {
		status int
		header map[string]string
		body   string
	}{
		{403, nil, `{"error_code":"403000","message":"Api Key is invalid"}`},
		{403, nil, `{"errorCode":"403003","errorDescription":"Insufficient permissions"}`},
		{403, nil, `{"errorCode":"403010","errorDescription":"..."}`},
		{403, nil, `{"errorCode":"403011","errorDescription":"..."}`},
		{403, nil, `{"errorCode":"403025","errorDescription":"Profile is not valid"}`},
		{403, map[string]string{"WWW-Authenticate": `Bearer error="insufficient_scope"`}, `{}`},
		{400, nil, `{"errorCode":"invalid_request"}`},
		{404, nil, `{}`},
		{500, nil, `{"error":"server_error"}`},
		{502, nil, ""},
		{503, map[string]string{"Retry-After": "1"}, `{}`},
		{504, nil, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.body), func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				jsonError(w, tc.status, tc.body)
			})
			tokens := newTokens()
			p := newProxy(t, tokens, Options{})
			p.wait = func(context.Context, time.Duration) error { t.Error("waited"); return nil }
			resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || string(resp.Body) != tc.body || resp.Attempts != 1 {
				t.Errorf("response %d %q attempts %d; want %d %q 1", resp.StatusCode, resp.Body, resp.Attempts, tc.status, tc.body)
			}
			if _, inv := tokens.snapshot(); len(inv) != 0 {
				t.Errorf("invalidated: %+v", inv)
			}
			if n := len(up.requests()); n != 1 {
				t.Errorf("upstream got %d requests", n)
			}
		})
	}
}

func TestCall429(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		retryAfter    string // "" : none
		always        bool   // every answer is a 429
		maxRetryAfter time.Duration
		wantWaits     []time.Duration
		wantStatus    int
	}{
		{"short", "2", false, 0, []time.Duration{2 * time.Second}, 200},
		{"zero", "0", false, 0, []time.Duration{0}, 200},
		{"at the default max", "10", false, 0, []time.Duration{10 * time.Second}, 200},
		{"over the default max", "11", false, 0, nil, 429},
		{"long", "60", false, 0, nil, 429},
		{"http date", now.Add(3 * time.Second).Format(http.TimeFormat), false, 0, []time.Duration{3 * time.Second}, 200},
		{"http date in the past", now.Add(-time.Minute).Format(http.TimeFormat), false, 0, []time.Duration{0}, 200},
		{"http date too late", now.Add(time.Hour).Format(http.TimeFormat), false, 0, nil, 429},
		{"missing", "", false, 0, nil, 429},
		{"garbage", "soon", false, 0, nil, 429},
		{"fraction", "1.5", false, 0, nil, 429},
		{"negative", "-1", false, 0, nil, 429},
		{"huge", "99999999999999999999", false, 0, nil, 429},
		{"max int64", "9223372036854775807", false, 0, nil, 429},
		{"second 429 returned", "1", true, 0, []time.Duration{time.Second}, 429},
		{"custom max allows", "1", false, 1500 * time.Millisecond, []time.Duration{time.Second}, 200},
		{"custom max refuses", "2", false, 1500 * time.Millisecond, nil, 429},
		{"disabled", "1", false, -1, nil, 429},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 || tc.always {
					if tc.retryAfter != "" {
						w.Header().Set("Retry-After", tc.retryAfter)
					}
					jsonError(w, 429, body429050)
					return
				}
				ok(w, r, n)
			})
			tokens := newTokens()
			p := newProxy(t, tokens, Options{MaxRetryAfter: tc.maxRetryAfter})
			p.now = func() time.Time { return now }
			var waits []time.Duration
			p.wait = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Method: "POST", Path: "/x", Body: []byte(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(waits, tc.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tc.wantWaits)
			}
			wantAttempts := 1 + len(tc.wantWaits)
			if resp.StatusCode != tc.wantStatus || resp.Attempts != wantAttempts {
				t.Errorf("response %d attempts %d; want %d %d", resp.StatusCode, resp.Attempts, tc.wantStatus, wantAttempts)
			}
			if resp.StatusCode == 429 && (string(resp.Body) != body429050 || resp.Header.Get("Retry-After") != tc.retryAfter) {
				t.Errorf("429 not returned as is: %q, Retry-After %q", resp.Body, resp.Header.Get("Retry-After"))
			}
			if n := len(up.requests()); n != wantAttempts {
				t.Errorf("upstream got %d requests, want %d", n, wantAttempts)
			}
			if _, inv := tokens.snapshot(); len(inv) != 0 {
				t.Errorf("a 429 invalidated a token: %+v", inv)
			}
		})
	}
}

func TestCall401Then429(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			jsonError(w, 401, body401013)
		case 2:
			w.Header().Set("Retry-After", "1")
			jsonError(w, 429, body429050)
		default:
			ok(w, r, n)
		}
	})
	tokens := newTokens()
	p := newProxy(t, tokens, Options{})
	p.wait = func(context.Context, time.Duration) error { return nil }
	resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Attempts != 3 || resp.Generation != 2 {
		t.Errorf("response %d attempts %d generation %d; want 200 3 2", resp.StatusCode, resp.Attempts, resp.Generation)
	}
	reqs := up.requests()
	if len(reqs) != 3 || reqs[2].header.Get("Authorization") != "Bearer "+tokenFor(2) {
		t.Errorf("upstream got %d requests, the last with the wrong token", len(reqs))
	}
}

func TestCall429DeadlineTooClose(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Retry-After", "120")
		jsonError(w, 429, body429050)
	})
	p := newProxy(t, newTokens(), Options{MaxRetryAfter: time.Hour})
	p.wait = func(context.Context, time.Duration) error { t.Error("waited past the deadline"); return nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := call(t, p, ctx, targetFor(up.URL), Request{Path: "/x"})
	if err != nil || resp.StatusCode != 429 || resp.Attempts != 1 {
		t.Fatalf("Call = %d attempts %d, %v; want the 429", resp.StatusCode, resp.Attempts, err)
	}
}

func TestCall429WaitCanceled(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Retry-After", "5")
		jsonError(w, 429, body429050)
	})
	p := newProxy(t, newTokens(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	p.wait = func(ctx context.Context, d time.Duration) error {
		cancel() // the caller gives up while we wait
		return sleepCtx(ctx, d)
	}
	_, err := call(t, p, ctx, targetFor(up.URL), Request{Path: "/x", Query: map[string]string{"k": secretMark}})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUpstream) {
		t.Fatalf("Call = %v; want canceled", err)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

func TestSleepCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleepCtx(canceled, 1h) = %v", err)
	}
	if err := sleepCtx(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("sleepCtx(canceled, 0) = %v", err)
	}
	if err := sleepCtx(context.Background(), 0); err != nil {
		t.Errorf("sleepCtx(0) = %v", err)
	}
	if err := sleepCtx(context.Background(), time.Nanosecond); err != nil {
		t.Errorf("sleepCtx(1ns) = %v", err)
	}
}

func TestCallRedirects(t *testing.T) {
	// other is another origin: it must never see a request.
	other := newUpstream(t, ok)

	redirectTo := func(loc func(r *http.Request) string, code int) func(w http.ResponseWriter, r *http.Request, n int) {
		return func(w http.ResponseWriter, r *http.Request, n int) {
			if !strings.HasPrefix(r.URL.Path, "/hop") {
				ok(w, r, n)
				return
			}
			http.Redirect(w, r, loc(r), code)
		}
	}
	chain := func(hops int) func(r *http.Request) string {
		return func(r *http.Request) string {
			var i int
			fmt.Sscanf(r.URL.Path, "/hop%d", &i)
			if i+1 >= hops {
				return "/api/landed"
			}
			return fmt.Sprintf("/hop%d", i+1)
		}
	}
	tests := []struct {
		name       string
		code       int
		loc        func(r *http.Request) string
		client     *http.Client
		wantErr    string
		wantStatus int
	}{
		{"same origin", 302, chain(1), nil, "", 200},
		{"same origin 307 keeps the body", 307, chain(1), nil, "", 200},
		{"three redirects", 302, chain(3), nil, "", 200},
		{"four redirects", 302, chain(4), nil, "more than 3 redirects", 0},
		{"other origin", 302, func(*http.Request) string { return other.URL + "/steal" }, nil, "redirect to another origin refused", 0},
		{"other origin, permissive client", 307, func(*http.Request) string { return other.URL + "/steal" },
			&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}, "redirect to another origin refused", 0},
		{"other scheme", 302, func(r *http.Request) string { return "https://" + r.Host + "/api/landed" }, nil, "redirect to another origin refused", 0},
		{"user info", 302, func(r *http.Request) string { return "http://u:p@" + r.Host + "/api/landed" }, nil, "user info", 0},
		{"client's own policy runs", 302, chain(1),
			&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, "", 302},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, redirectTo(tc.loc, tc.code))
			p := newProxy(t, newTokens(), Options{Client: tc.client})
			resp, err := call(t, p, context.Background(), targetFor(up.URL),
				Request{Method: "POST", Path: "/hop0", Body: []byte(`{"a":1}`), Query: map[string]string{"q": secretMark}})
			if n := len(other.requests()); n != 0 {
				t.Fatalf("another origin got %d requests", n)
			}
			if tc.wantErr != "" {
				if !errors.Is(err, ErrUpstream) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "POST /hop0") {
					t.Fatalf("Call = %v; want ErrUpstream saying POST /hop0 and %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || resp.Attempts != 1 {
				t.Errorf("response %d attempts %d; want %d 1", resp.StatusCode, resp.Attempts, tc.wantStatus)
			}
			reqs := up.requests()
			last := reqs[len(reqs)-1]
			if tc.wantStatus == 200 && (last.path != "/api/landed" || last.header.Get("Authorization") != "Bearer "+tokenFor(1) ||
				last.header.Get("X-Api-Key") != testAPIKey) {
				t.Errorf("redirected request %s lacks the credentials", last.path)
			}
			if tc.code == 307 && string(last.body) != `{"a":1}` {
				t.Errorf("307 lost the body: %q", last.body)
			}
		})
	}
}

func TestCallContextCanceled(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		close(started)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	p := newProxy(t, newTokens(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := call(t, p, ctx, targetFor(up.URL), Request{Path: "/api/x", Query: map[string]string{"k": secretMark}})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUpstream) {
		t.Fatalf("Call = %v; want canceled and ErrUpstream", err)
	}
	if !strings.Contains(err.Error(), "GET /api/x") || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("error %q does not say what was canceled", err)
	}
}

func TestCallTransportErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	hangUp := func(w http.ResponseWriter, r *http.Request, n int) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	shortBody := func(w http.ResponseWriter, r *http.Request, n int) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{\"partial\":")
		buf.Flush()
		conn.Close()
	}
	tests := []struct {
		name     string
		base     func() string
		wantSays string
	}{
		{"connection refused", func() string { return closedURL }, "connection refused"},
		{"hang up", func() string { return newUpstream(t, hangUp).URL }, "connection closed by the upstream"},
		{"short body", func() string { return newUpstream(t, shortBody).URL }, "reading the response: connection closed by the upstream"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, newTokens(), Options{})
			_, err := call(t, p, context.Background(), targetFor(tc.base()),
				Request{Method: "DELETE", Path: "/api/company1/segments/s1", Query: map[string]string{"secret": secretMark + "-query"}})
			if !errors.Is(err, ErrUpstream) {
				t.Fatalf("Call = %v; want ErrUpstream", err)
			}
			if !strings.Contains(err.Error(), "DELETE /api/company1/segments/s1") || !strings.Contains(err.Error(), tc.wantSays) {
				t.Errorf("error %q; want it to name the call and say %q", err, tc.wantSays)
			}
		})
	}
}

func TestCallResponseHeaders(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		h := w.Header()
		h.Set("Set-Cookie", "session=abc")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("X-Request-Id", "req-1")
		h.Add("X-Multi", "a")
		h.Add("X-Multi", "b")
		jsonError(w, 200, `{}`)
	})
	p := newProxy(t, newTokens(), Options{})
	resp, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"Set-Cookie", "Connection", "X-Hop", "Keep-Alive", "Proxy-Authenticate", "Transfer-Encoding"} {
		if v, ok := resp.Header[gone]; ok {
			t.Errorf("response header %s = %q was copied", gone, v)
		}
	}
	if resp.Header.Get("X-Request-Id") != "req-1" || resp.Header.Get("Content-Type") != "application/json" ||
		!slices.Equal(resp.Header.Values("X-Multi"), []string{"a", "b"}) {
		t.Errorf("response headers = %v", resp.Header)
	}
}

func TestResponseHeader(t *testing.T) {
	src := http.Header{
		"Connection":        {"close, X-Named", "x-other"},
		"X-Named":           {"1"},
		"X-Other":           {"1"},
		"Keep-Alive":        {"1"},
		"Proxy-Connection":  {"1"},
		"Te":                {"1"},
		"Trailer":           {"1"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"h2c"},
		"Set-Cookie":        {"a=b"},
		"Set-Cookie2":       {"a=b"},
		"Content-Type":      {"application/json"},
		"Retry-After":       {"3"},
	}
	got := responseHeader(src)
	want := http.Header{"Content-Type": {"application/json"}, "Retry-After": {"3"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("responseHeader = %v, want %v", got, want)
	}
}

func TestCallBadCredential(t *testing.T) {
	tests := []struct {
		name string
		cred Credential
	}{
		{"mac token type", Credential{AccessToken: tokenFor(1), TokenType: "mac", Generation: 1}},
		{"DPoP token type", Credential{AccessToken: tokenFor(1), TokenType: "DPoP", Generation: 1}},
		{"CRLF in token", Credential{AccessToken: secretMark + "\r\nX-Evil: 1", Generation: 1}},
		{"space in token", Credential{AccessToken: secretMark + " x", Generation: 1}},
		{"empty token", Credential{Generation: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, ok)
			p := newProxy(t, fixedTokens{tc.cred}, Options{})
			_, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/x"})
			if err == nil {
				t.Fatal("Call with an unusable credential succeeded")
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream got %d requests", n)
			}
		})
	}
}

// fixedTokens always hands out the same credential.
type fixedTokens struct{ cred Credential }

func (f fixedTokens) Token(context.Context, string) (Credential, error) { return f.cred, nil }

func (f fixedTokens) Invalidate(context.Context, string, uint64, string) (Credential, error) {
	return Credential{}, errors.New("no newer token")
}

func TestIsToken68(t *testing.T) {
	for s, want := range map[string]bool{
		"abc":            true,
		"eyJ.a-b_c~d+e/": true,
		"abc==":          true,
		"a=b":            false,
		"=":              false,
		"":               false,
		"a b":            false,
		"a\r\nb":         false,
		"a\"b":           false,
	} {
		if got := isToken68(s); got != want {
			t.Errorf("isToken68(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCallLogs(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			jsonError(w, 401, body401013)
			return
		}
		ok(w, r, n)
	})
	p := newProxy(t, newTokens(), Options{Logger: logger})
	if _, err := call(t, p, context.Background(), targetFor(up.URL), Request{Path: "/api/x", Query: map[string]string{"q": secretMark}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), secretMark) {
		t.Fatalf("logs carry a secret:\n%s", buf.String())
	}
	type record struct {
		Msg, Component, Connection, Method, Path, TokenFP string
		Status, Attempt                                   int
		Generation                                        uint64
		Duration                                          int64
	}
	var got []record
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		r := record{Msg: fmt.Sprint(m["msg"]), Component: fmt.Sprint(m["component"]), Connection: fmt.Sprint(m["connection"]),
			Method: fmt.Sprint(m["method"]), Path: fmt.Sprint(m["path"]), TokenFP: fmt.Sprint(m["token_fp"])}
		r.Status = int(m["status"].(float64))
		r.Attempt = int(m["attempt"].(float64))
		r.Generation = uint64(m["generation"].(float64))
		if _, ok := m["duration"]; !ok {
			t.Errorf("record has no duration: %s", line)
		}
		got = append(got, r)
	}
	want := []record{
		{"upstream call", "apiproxy", testConnection, "GET", "/api/x", fingerprint.Of(tokenFor(1)), 401, 1, 1, 0},
		{"upstream call", "apiproxy", testConnection, "GET", "/api/x", fingerprint.Of(tokenFor(2)), 200, 2, 2, 0},
	}
	if !slices.Equal(got, want) {
		t.Errorf("log records = %+v\nwant %+v", got, want)
	}
	if fp := fingerprint.Of(tokenFor(1)); len(fp) != 8 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("Fingerprint = %q, want 8 hex digits", fp)
	}
}

// TestErrorsNeverCarryToken runs every error path with a token and query
// values that must not show.
func TestErrorsNeverCarryToken(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	big := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write(make([]byte, 2048)) })
	always401 := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) { jsonError(w, 401, body401013) })
	other := newUpstream(t, ok)
	away := newUpstream(t, func(w http.ResponseWriter, r *http.Request, n int) {
		http.Redirect(w, r, other.URL+"/?token="+secretMark, http.StatusFound)
	})
	q := map[string]string{"secret": secretMark}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		base   string
		tokens func() *fakeTokens
		req    Request
	}{
		{"refused", context.Background(), closedURL, newTokens, Request{Path: "/x", Query: q}},
		{"too large", context.Background(), big.URL, newTokens, Request{Path: "/x", Query: q}},
		{"redirect away", context.Background(), away.URL, newTokens, Request{Path: "/x", Query: q}},
		{"canceled", canceled, big.URL, newTokens, Request{Path: "/x", Query: q}},
		{"invalidate fails", context.Background(), always401.URL, func() *fakeTokens {
			f := newTokens()
			f.invalidateErr = errors.New("throttled")
			return f
		}, Request{Path: "/x", Query: q}},
		{"bad token", context.Background(), big.URL, func() *fakeTokens {
			f := newTokens()
			f.token = secretMark + "\n"
			return f
		}, Request{Path: "/x", Query: q}},
		{"bad token type", context.Background(), big.URL, func() *fakeTokens {
			f := newTokens()
			f.tokenType = "mac"
			return f
		}, Request{Path: "/x", Query: q}},
		{"header refused", context.Background(), big.URL, newTokens, Request{Path: "/x", Headers: map[string]string{"Authorization": "Bearer " + secretMark}}},
		{"header value refused", context.Background(), big.URL, newTokens, Request{Path: "/x", Headers: map[string]string{"X-A": secretMark + "\n"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			p := newProxy(t, tc.tokens(), Options{MaxResponseBody: 1024,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			_, err := call(t, p, tc.ctx, targetFor(tc.base), tc.req)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(logs.String(), secretMark) {
				t.Errorf("logs carry a secret:\n%s", logs.String())
			}
		})
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("another origin got %d requests", n)
	}
}
