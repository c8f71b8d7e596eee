package apiproxy

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzBuildURL checks that whatever BuildURL accepts stays below the base
// URL: same scheme and host, a path under the base's path, and no dot
// segment even after decoding (twice, as a confused server might).
func FuzzBuildURL(f *testing.F) {
	seeds := []struct{ base, path, key, value string }{
		{"https://analytics.adobe.io", "/api/company1/reports", "rsid", "r1"},
		{"http://127.0.0.1:8181/", "discovery/me", "", ""},
		{"https://h.example/prefix/", "/api/x", "q", "a&b=c d"},
		{"https://h.example/prefix", "../x", "", ""},
		{"https://h.example/prefix", "%2e%2e/%2E%2E/x", "", ""},
		{"https://h.example/prefix", "a%2f..%2fb", "", ""},
		{"https://h.example/prefix", "%252e%252e/x", "", ""},
		{"https://h.example", "//evil.example/x", "", ""},
		{"https://h.example", "https://evil.example/", "", ""},
		{"https://h.example", "/\\evil.example", "", ""},
		{"https://h.example", "user@evil.example", "", ""},
		{"https://h.example", "a?b=1#f", "", ""},
		{"https://h.example", "a\x00b\r\n", "", ""},
		{"https://h.example", "..;/x", "", ""},
		{"https://h.example/a/../b", "x", "", ""},
		{"http://[::1]:8080/p", "x/y/", "k", "v"},
	}
	for _, s := range seeds {
		f.Add(s.base, s.path, s.key, s.value)
	}
	f.Fuzz(func(t *testing.T, base, path, key, value string) {
		var query map[string]string
		if key != "" || value != "" {
			query = map[string]string{key: value}
		}
		u, err := BuildURL(base, path, query)
		if err != nil {
			if !errors.Is(err, ErrNotAllowed) && !errors.Is(err, ErrBadTarget) {
				t.Fatalf("BuildURL(%q, %q) = %v: neither ErrNotAllowed nor ErrBadTarget", base, path, err)
			}
			return
		}
		b, err := url.Parse(base)
		if err != nil {
			t.Fatalf("BuildURL accepted base %q that does not parse: %v", base, err)
		}
		check := func(what string, got *url.URL) {
			t.Helper()
			if got.Scheme != b.Scheme || got.Host != b.Host || got.User != nil || got.Opaque != "" || got.Fragment != "" {
				t.Fatalf("%s %s left the base %s", what, got, base)
			}
			if prefix := strings.TrimSuffix(b.Path, "/") + "/"; !strings.HasPrefix(got.Path, prefix) {
				t.Fatalf("%s path %q is not below the base path %q", what, got.Path, b.Path)
			}
			decodedTwice, err := url.PathUnescape(got.Path)
			if err != nil {
				decodedTwice = got.Path
			}
			for _, p := range []string{got.Path, decodedTwice} {
				if strings.ContainsAny(p, "\\\x00\r\n") {
					t.Fatalf("%s path %q has a backslash or control character", what, p)
				}
				for seg := range strings.SplitSeq(p, "/") {
					if seg == ".." || seg == "." {
						t.Fatalf("%s path %q has a %q segment", what, p, seg)
					}
				}
			}
		}
		check("result", u)
		again, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("result %q does not parse: %v", u, err)
		}
		check("reparsed result", again)
		if again.Path != u.Path || again.RawQuery != u.RawQuery {
			t.Fatalf("result %q does not round-trip: %q ?%q", u, again.Path, again.RawQuery)
		}
		if query != nil {
			if got := again.Query(); len(got) != 1 || got.Get(key) != value {
				t.Fatalf("query %v came back as %v", query, got)
			}
		} else if again.RawQuery != "" {
			t.Fatalf("no query given, got %q", again.RawQuery)
		}
	})
}
