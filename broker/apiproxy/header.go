package apiproxy

import (
	"fmt"
	"net/http"
	"strings"
)

// hopByHop are the headers of one connection, not of the message (RFC 9110
// 7.6.1), and the obsolete ones that proxies still treat so.
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// proxySets are the headers the proxy or the transport sets: neither a caller
// nor a Target may.
var proxySets = map[string]bool{
	"Authorization":  true,
	"Host":           true,
	"X-Api-Key":      true,
	"Cookie":         true,
	"Content-Length": true,
}

// buildHeader checks the Target's and the caller's headers and returns the
// request's headers but Authorization: the caller's, the default Accept, the
// Target's and x-api-key. A caller may not set a header that the Target sets.
func buildHeader(target Target, caller map[string]string) (http.Header, error) {
	h := make(http.Header, len(caller)+len(target.Headers)+3)
	fixed := make(map[string]string, len(target.Headers))
	for name, value := range target.Headers {
		key, err := checkHeader(name, value)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadTarget, err)
		}
		if proxySets[key] || hopByHop[key] {
			return nil, fmt.Errorf("%w: header %q is set by the proxy (x-api-key: use APIKey)", ErrBadTarget, name)
		}
		if _, dup := fixed[key]; dup {
			return nil, fmt.Errorf("%w: header %q is given twice (names are case-insensitive)", ErrBadTarget, name)
		}
		fixed[key] = value
	}
	for name, value := range caller {
		key, err := checkHeader(name, value)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotAllowed, err)
		}
		if proxySets[key] || hopByHop[key] {
			return nil, fmt.Errorf("%w: header %q is set by the proxy", ErrNotAllowed, name)
		}
		if _, ok := fixed[key]; ok {
			return nil, fmt.Errorf("%w: header %q is set by the connection's configuration", ErrNotAllowed, name)
		}
		if _, dup := h[key]; dup {
			return nil, fmt.Errorf("%w: header %q is given twice (names are case-insensitive)", ErrNotAllowed, name)
		}
		h[key] = []string{value}
	}
	for key, value := range fixed {
		h[key] = []string{value}
	}
	if _, ok := h["Accept"]; !ok {
		h["Accept"] = []string{"application/json"}
	}
	if target.APIKey != "" {
		if _, err := checkHeader("X-Api-Key", target.APIKey); err != nil {
			return nil, fmt.Errorf("%w: APIKey: %v", ErrBadTarget, err)
		}
		h["X-Api-Key"] = []string{target.APIKey}
	}
	return h, nil
}

// checkHeader checks a header's name (an RFC 9110 token) and value (no
// control characters but tab: no CR, LF or NUL) and returns the canonical
// name. The value is never shown: it may be a secret.
func checkHeader(name, value string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("header with an empty name")
	}
	for i := 0; i < len(name); i++ {
		if !tokenByte(name[i]) {
			return "", fmt.Errorf("header name %q has %q at byte %d", name, name[i], i)
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", fmt.Errorf("header %q has a control character at byte %d of its value", name, i)
		}
	}
	return http.CanonicalHeaderKey(name), nil
}

// tokenByte reports whether c is an RFC 9110 tchar.
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// responseHeader copies the upstream's headers but the hop-by-hop ones, those
// that Connection names, and cookies.
func responseHeader(src http.Header) http.Header {
	dst := make(http.Header, len(src))
	var named map[string]bool
	for _, v := range src["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if named == nil {
					named = make(map[string]bool)
				}
				named[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	for k, v := range src {
		ck := http.CanonicalHeaderKey(k)
		if hopByHop[ck] || named[ck] || ck == "Set-Cookie" || ck == "Set-Cookie2" {
			continue
		}
		dst[k] = v
	}
	return dst
}
