package provider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// Kind says whether retrying the same request can succeed.
type Kind int

const (
	// Transient failures (network, timeout, 5xx, 429, malformed success) may
	// succeed on a later attempt; retry with backoff.
	Transient Kind = iota
	// Permanent failures (invalid_grant, invalid_client, ...) will not: the
	// credentials or the configuration must change first.
	Permanent
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	default:
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// Error is a classified failure to obtain a token. Every field is safe to log:
// Code and Description are sanitised and never contain a token, code,
// verifier or client secret.
type Error struct {
	Kind Kind
	// Code is the OAuth error code the server sent (invalid_grant,
	// invalid_client, server_error, ...) or, failing that, one of "network",
	// "timeout", "http_<status>", "bad_response", or a local precondition
	// ("no_refresh_token", "no_code").
	Code string
	// StatusCode is the HTTP status of the response, 0 if there was none.
	StatusCode int
	// Description is the server's error_description (or, for a network
	// failure, the transport's message) with known secrets replaced by
	// "[redacted]", control characters removed and at most
	// maxDescriptionRunes long.
	Description string
	// RetryAfter is the server's Retry-After on a 429 or 5xx, 0 if none.
	RetryAfter time.Duration

	cause error // network or context error, for errors.Is; never a response body
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint: ")
	b.WriteString(e.Code)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Unwrap returns the network or context error behind a Transient failure, so
// that errors.Is(err, context.DeadlineExceeded) works. It is nil for
// failures the server reported.
func (e *Error) Unwrap() error { return e.cause }

// IsPermanent reports whether err is (or wraps) a [Permanent] [*Error].
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == Permanent
}

// IsTransient reports whether err is (or wraps) a [Transient] [*Error].
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == Transient
}

// permanentCodes are RFC 6749 section 5.2 codes that a retry of the same
// request cannot fix.
var permanentCodes = map[string]bool{
	"invalid_request":        true,
	"invalid_client":         true,
	"invalid_grant":          true,
	"unauthorized_client":    true,
	"unsupported_grant_type": true,
	"invalid_scope":          true,
}

// transientCodes are codes some servers send from the token endpoint although
// RFC 6749 defines them for the authorization endpoint, plus RFC 8628's
// slow_down.
var transientCodes = map[string]bool{
	"server_error":            true,
	"temporarily_unavailable": true,
	"slow_down":               true,
}

// clientAuthCodes are the answers after which auto-detection tries the other
// way of sending the client's credentials. None of them means the grant was
// used, so resending it is safe.
var clientAuthCodes = map[string]bool{
	"invalid_client":      true,
	"unauthorized_client": true,
	"invalid_request":     true,
}

const (
	maxDescriptionRunes = 200
	maxCodeLen          = 64
	maxRetryAfter       = 24 * time.Hour
	redacted            = "[redacted]"
)

// secrets is the set of strings that must not appear in an error.
type secrets []string

// newSecrets collects the caller's secrets and the forms in which a server
// might echo them: as sent in a form body, and as the Basic credentials.
func newSecrets(clientID, clientSecret string, more ...string) secrets {
	var s secrets
	add := func(v string) {
		if v == "" {
			return
		}
		s = append(s, v)
		if q := url.QueryEscape(v); q != v {
			s = append(s, q)
		}
	}
	add(clientSecret)
	for _, v := range more {
		add(v)
	}
	if clientSecret != "" {
		add(base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID) + ":" + url.QueryEscape(clientSecret))))
	}
	return s
}

// withBody adds token-like values found in a response body: whatever a server
// put under a key ending in "token", "secret", "code" or "verifier" (other
// than the error fields) is treated as a secret.
func (s secrets) withBody(body []byte, contentType string) secrets {
	out := append(secrets(nil), s...)
	sensitive := func(key string) bool {
		k := strings.ToLower(key)
		if k == "error" || k == "error_code" || k == "errorcode" {
			return false
		}
		return strings.HasSuffix(k, "token") || strings.HasSuffix(k, "secret") ||
			k == "code" || strings.HasSuffix(k, "verifier")
	}
	media, _, _ := mime.ParseMediaType(contentType)
	if media == "application/x-www-form-urlencoded" || media == "text/plain" {
		if vals, err := url.ParseQuery(string(body)); err == nil {
			for k, vs := range vals {
				if sensitive(k) {
					out = append(out, vs...)
				}
			}
		}
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		for k, v := range m {
			if str, ok := v.(string); ok && sensitive(k) {
				out = append(out, str)
			}
		}
	}
	return out
}

// redact replaces every secret in s, longest first so that a secret that
// contains another is replaced whole.
func (s secrets) redact(text string) string {
	sorted := append(secrets(nil), s...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, v := range sorted {
		if v != "" {
			text = strings.ReplaceAll(text, v, redacted)
		}
	}
	return text
}

// sanitize makes server- or transport-supplied text safe to log: secrets
// redacted first (so truncation cannot leave half a secret), then control
// characters flattened, then cut to maxDescriptionRunes.
func (s secrets) sanitize(text string) string {
	text = s.redact(strings.ToValidUTF8(text, "\uFFFD"))
	text = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
	text = strings.TrimSpace(text)
	if utf8.RuneCountInString(text) > maxDescriptionRunes {
		runes := []rune(text)
		text = string(runes[:maxDescriptionRunes]) + "…"
	}
	return text
}

// sanitizeCode returns code if it looks like an OAuth error code and is not a
// secret, else fallback.
func (s secrets) sanitizeCode(code, fallback string) string {
	if code == "" || len(code) > maxCodeLen || s.redact(code) != code {
		return fallback
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fallback
		}
	}
	return code
}

// classify turns a failure from x/oauth2 into an [*Error], or into the
// caller's context error when the caller gave up. obs tells what happened on
// the wire, which x/oauth2's plain errors do not say.
func (c *Client) classify(ctx context.Context, err error, obs *observer, sec secrets) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		// A complete answer from the server: classify it even if the context
		// ended meanwhile.
		return c.classifyResponse(re, sec)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return &Error{Kind: Transient, Code: "timeout", Description: "deadline exceeded before the token endpoint answered", cause: ctxErr}
		}
		return fmt.Errorf("token endpoint: request abandoned: %w", ctxErr)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return networkError(ue.Err, sec)
	}
	if bodyErr := obs.bodyError(); bodyErr != nil {
		return networkError(bodyErr, sec)
	}
	// The server answered 2xx but x/oauth2 could not use the answer: not
	// JSON or form, or no access_token. x/oauth2's message is not used; it
	// may quote the body in future versions.
	return &Error{Kind: Transient, Code: "bad_response", StatusCode: obs.status(),
		Description: "the token endpoint's success response has no usable access_token"}
}

func networkError(err error, sec secrets) *Error {
	code := "network"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		code = "timeout"
	}
	return &Error{Kind: Transient, Code: code, Description: sec.sanitize(err.Error()), cause: err}
}

func (c *Client) classifyResponse(re *oauth2.RetrieveError, sec secrets) *Error {
	status := re.Response.StatusCode
	sec = sec.withBody(re.Body, re.Response.Header.Get("Content-Type"))
	oauthCode := strings.ToLower(re.ErrorCode)
	e := &Error{
		StatusCode:  status,
		Code:        sec.sanitizeCode(re.ErrorCode, "http_"+strconv.Itoa(status)),
		Description: sec.sanitize(re.ErrorDescription),
	}
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		status == http.StatusTooEarly:
		e.Kind = Transient
	case transientCodes[oauthCode]:
		e.Kind = Transient
	case permanentCodes[oauthCode]:
		e.Kind = Permanent
	case status >= 200 && status < 300 && oauthCode == "":
		// Unreachable with today's x/oauth2 (a 2xx without "error" is a
		// token), kept so a change there cannot turn into a permanent failure.
		e.Kind, e.Code = Transient, "bad_response"
	default:
		// Any other explicit OAuth error, and any other 3xx or 4xx: sending
		// the same request again gets the same answer.
		e.Kind = Permanent
	}
	if e.Kind == Transient && (status == http.StatusTooManyRequests || status >= 500) {
		e.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), c.now())
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP-date (RFC 9110 section
// 10.2.3) relative to now. Nonsense yields 0; the delay is capped at a day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// isClientAuthFailure reports whether err says the server did not accept the
// way the client authenticated, which is when auto-detection tries the other
// way.
func isClientAuthFailure(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Kind != Permanent {
		return false
	}
	if e.StatusCode != http.StatusBadRequest && e.StatusCode != http.StatusUnauthorized {
		return false
	}
	return clientAuthCodes[strings.ToLower(e.Code)] || strings.HasPrefix(e.Code, "http_")
}
