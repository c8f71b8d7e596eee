package apiproxy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// BuildURL joins path, relative to baseURL, to the base URL's path and adds
// query, encoded with url.Values (sorted by key).
//
// The path is taken in its escaped form, as it appears in a URL; the leading
// "/" is optional. It must stay below the base URL, so BuildURL refuses with
// ErrNotAllowed: an empty path; a scheme ("http:", "https://...") or a host
// ("//host"); '@', '\', ';', '?' and '#' (the query goes in query); control
// characters and bytes that are not allowed in a URL path (space, non-ASCII:
// percent-encode them); empty, "." and ".." segments; and the
// percent-encodings of '.', '/', '\', '%' (double encoding), ';', '?', '#',
// '@' and control characters, which servers and proxies along the way may
// decode before they route. A base URL that is not an absolute http(s) URL,
// or that carries user info, a query, a fragment or such segments, is
// refused with ErrBadTarget.
//
// Whatever passes, the result is checked once more: it must parse back to the
// base URL's origin (scheme, host and port) and to a path below the base's.
func BuildURL(baseURL, path string, query map[string]string) (*url.URL, error) {
	base, basePath, err := parseBase(baseURL)
	if err != nil {
		return nil, err
	}
	rel, err := relativePath(path)
	if err != nil {
		return nil, err
	}
	rawQuery, err := encodeQuery(query)
	if err != nil {
		return nil, err
	}
	raw := basePath + "/" + rel
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: path does not decode", ErrNotAllowed)
	}
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, Path: decoded, RawQuery: rawQuery}
	if u.EscapedPath() != raw {
		u.RawPath = raw
	}

	// Belt and braces: what goes on the wire must parse back to the same
	// origin and path.
	again, err := url.Parse(u.String())
	if err != nil || again.User != nil || again.Opaque != "" || origin(again) != origin(base) ||
		again.EscapedPath() != raw || again.RawQuery != rawQuery || !strings.HasPrefix(again.Path, strings.TrimSuffix(base.Path, "/")+"/") {
		return nil, fmt.Errorf("%w: path %q leaves the base URL", ErrNotAllowed, path)
	}
	return u, nil
}

// parseBase checks a Target's base URL and returns it with its escaped path
// without the trailing slash ("" for the root).
func parseBase(baseURL string) (*url.URL, string, error) {
	// The parse error is not shown: it would repeat the URL, user info included.
	b, err := url.Parse(baseURL)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("%w: base URL does not parse", ErrBadTarget)
	case b.Scheme != "http" && b.Scheme != "https":
		return nil, "", fmt.Errorf("%w: base URL must be http or https", ErrBadTarget)
	case b.Opaque != "" || b.Host == "":
		return nil, "", fmt.Errorf("%w: base URL has no host", ErrBadTarget)
	case b.User != nil:
		return nil, "", fmt.Errorf("%w: base URL must not carry user info", ErrBadTarget)
	case b.RawQuery != "" || b.ForceQuery || b.Fragment != "" || b.RawFragment != "":
		return nil, "", fmt.Errorf("%w: base URL must not carry a query or a fragment", ErrBadTarget)
	}
	basePath := strings.TrimSuffix(b.EscapedPath(), "/")
	if basePath != "" {
		if err := checkPath(strings.TrimPrefix(basePath, "/")); err != nil {
			return nil, "", fmt.Errorf("%w: base URL path: %v", ErrBadTarget, err)
		}
	}
	return b, basePath, nil
}

// relativePath checks a request path and returns it without its leading "/".
func relativePath(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: path is empty", ErrNotAllowed)
	}
	rel := strings.TrimPrefix(path, "/")
	if strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("%w: path must be relative: it names a host (starts with //)", ErrNotAllowed)
	}
	first, _, _ := strings.Cut(rel, "/")
	if strings.Contains(first, ":") {
		return "", fmt.Errorf("%w: path must be relative: %q looks like a scheme", ErrNotAllowed, first)
	}
	if rel == "" {
		return "", nil // "/": the base URL itself
	}
	if err := checkPath(rel); err != nil {
		return "", fmt.Errorf("%w: path %v", ErrNotAllowed, err)
	}
	return rel, nil
}

// checkPath checks an escaped path without its leading "/": allowed bytes,
// well-formed and allowed escapes, and no empty (but the last), "." or ".."
// segment. Its error is a detail for the caller to wrap.
func checkPath(p string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return fmt.Errorf("has a malformed escape at byte %d", i)
			}
			if d := unhex(p[i+1])<<4 | unhex(p[i+2]); bannedDecoded(d) {
				return fmt.Errorf("has an encoded %q (%s) at byte %d", rune(d), p[i:i+3], i)
			}
			i += 2
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("has a control character at byte %d", i)
		case c == '\\':
			return fmt.Errorf("has a backslash at byte %d", i)
		case c == '?' || c == '#':
			return fmt.Errorf("has %q at byte %d: the query goes in Query, fragments are not sent", c, i)
		case c == '@' || c == ';':
			return fmt.Errorf("has %q at byte %d", c, i)
		case !pathByte(c):
			return fmt.Errorf("has %q at byte %d: percent-encode it", c, i)
		}
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "." || s == "..":
			return fmt.Errorf("has a %q segment", s)
		case s == "" && i != len(segs)-1:
			return fmt.Errorf("has an empty segment (//)")
		}
	}
	return nil
}

// pathByte reports whether c may appear as it is in a path: RFC 3986
// unreserved and sub-delims (but ';'), ':' and '/'.
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '/':
		return true
	}
	return false
}

// bannedDecoded reports whether the byte d must not arrive percent-encoded.
func bannedDecoded(d byte) bool {
	switch d {
	case '.', '/', '\\', '%', ';', '?', '#', '@':
		return true
	}
	return d < 0x20 || d == 0x7f
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func encodeQuery(query map[string]string) (string, error) {
	if len(query) == 0 {
		return "", nil
	}
	v := make(url.Values, len(query))
	for k, val := range query {
		if k == "" {
			return "", fmt.Errorf("%w: query parameter with an empty name", ErrNotAllowed)
		}
		v.Set(k, val)
	}
	return v.Encode(), nil
}

// origin is scheme://host:port, lower case, with the scheme's default port
// made explicit.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
