package apiproxy

import (
	"errors"
	"strings"
	"testing"
)

func TestBuildURL(t *testing.T) {
	const adobe = "https://analytics.adobe.io"
	good := []struct {
		name, base, path string
		query            map[string]string
		want             string
	}{
		{"absolute path", adobe, "/api/company1/reports", nil, adobe + "/api/company1/reports"},
		{"leading slash optional", adobe, "api/company1/reports", nil, adobe + "/api/company1/reports"},
		{"trailing slash kept", adobe, "/api/company1/segments/", nil, adobe + "/api/company1/segments/"},
		{"root", adobe, "/", nil, adobe + "/"},
		{"discovery", adobe, "/discovery/me", nil, adobe + "/discovery/me"},
		{"base with slash", "http://127.0.0.1:8181/", "/discovery/me", nil, "http://127.0.0.1:8181/discovery/me"},
		{"base with prefix", "http://127.0.0.1:8181/prefix", "api/x", nil, "http://127.0.0.1:8181/prefix/api/x"},
		{"base with prefix and slash", "http://127.0.0.1:8181/prefix/", "/api/x", nil, "http://127.0.0.1:8181/prefix/api/x"},
		{"base prefix root", "https://h.example/prefix/", "/", nil, "https://h.example/prefix/"},
		{"base with escaped prefix", "https://h.example/my%20api", "x", nil, "https://h.example/my%20api/x"},
		{"ipv6 base", "http://[::1]:8080", "/x", nil, "http://[::1]:8080/x"},
		{"query sorted", adobe, "/api/c/dimensions", map[string]string{"rsid": "r1", "limit": "10", "page": "0"},
			adobe + "/api/c/dimensions?limit=10&page=0&rsid=r1"},
		{"query escaped", adobe, "/x", map[string]string{"q": "a&b=c d", "k y": "é"}, adobe + "/x?k+y=%C3%A9&q=a%26b%3Dc+d"},
		{"empty query value", adobe, "/x", map[string]string{"flag": ""}, adobe + "/x?flag="},
		{"escaped space kept", adobe, "/api/c/segments/my%20segment", nil, adobe + "/api/c/segments/my%20segment"},
		{"escaped utf-8 kept", adobe, "/api/c/x%C3%A9", nil, adobe + "/api/c/x%C3%A9"},
		{"colon after first segment", adobe, "/api/c/x:batch", nil, adobe + "/api/c/x:batch"},
		{"dots inside names", adobe, "/a/v1.2/..x/.hidden/x..", nil, adobe + "/a/v1.2/..x/.hidden/x.."},
		{"sub-delims", adobe, "/a/b!$&'()*+,=~_-", nil, adobe + "/a/b!$&'()*+,=~_-"},
		{"escaped colon in first segment", adobe, "a%3Ab", nil, adobe + "/a%3Ab"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			u, err := BuildURL(tc.base, tc.path, tc.query)
			if err != nil {
				t.Fatalf("BuildURL(%q, %q) = %v", tc.base, tc.path, err)
			}
			if got := u.String(); got != tc.want {
				t.Errorf("BuildURL(%q, %q) = %s, want %s", tc.base, tc.path, got, tc.want)
			}
		})
	}

	notAllowed := []struct {
		name, path, why string
		query           map[string]string
	}{
		{"empty", "", "empty", nil},
		{"http scheme", "http://evil.example/x", "scheme", nil},
		{"https scheme", "https://evil.example", "scheme", nil},
		{"scheme without slashes", "http:evil.example", "scheme", nil},
		{"javascript", "javascript:alert(1)", "scheme", nil},
		{"scheme after slash", "/https://evil.example", "scheme", nil},
		{"network path", "//evil.example/x", "host", nil},
		{"triple slash", "///x", "host", nil},
		{"backslash host", "/\\evil.example", "backslash", nil},
		{"double backslash", "\\\\evil.example", "backslash", nil},
		{"backslash inside", "a\\b", "backslash", nil},
		{"at sign", "a@b", "'@'", nil},
		{"userinfo", "user@evil.example/x", "'@'", nil},
		{"encoded at", "a%40b", "encoded", nil},
		{"dotdot", "a/../b", `".."`, nil},
		{"dotdot alone", "..", `".."`, nil},
		{"dotdot leading", "../x", `".."`, nil},
		{"dotdot trailing", "/a/..", `".."`, nil},
		{"dotdot trailing slash", "/a/../", `".."`, nil},
		{"dot leading", "./a", `"."`, nil},
		{"dot inside", "a/./b", `"."`, nil},
		{"dot trailing", "a/.", `"."`, nil},
		{"encoded dotdot", "%2e%2e/x", "encoded", nil},
		{"encoded dotdot upper", "%2E%2E/x", "encoded", nil},
		{"half encoded dotdot", ".%2e/x", "encoded", nil},
		{"encoded dot", "a/%2e/b", "encoded", nil},
		{"encoded slash", "a%2fb", "encoded", nil},
		{"encoded slash upper", "a%2F..%2Fb", "encoded", nil},
		{"encoded backslash", "a%5cb", "encoded", nil},
		{"encoded backslash upper", "a%5C..", "encoded", nil},
		{"double encoded dot", "%252e%252e/x", "encoded", nil},
		{"double encoded slash", "a%252fb", "encoded", nil},
		{"encoded percent", "a%25b", "encoded", nil},
		{"question mark", "a?b=1", "Query", nil},
		{"question mark only", "/x?", "Query", nil},
		{"encoded question mark", "a%3fb", "encoded", nil},
		{"fragment", "a#frag", "fragment", nil},
		{"encoded fragment", "a%23b", "encoded", nil},
		{"NUL", "a\x00b", "control", nil},
		{"encoded NUL", "a%00b", "encoded", nil},
		{"newline", "a\nb", "control", nil},
		{"carriage return", "a\rb", "control", nil},
		{"encoded CRLF", "a/b%0d%0aSet-Cookie:x", "encoded", nil},
		{"encoded CRLF in first segment", "a%0d%0aSet-Cookie:x", "scheme", nil},
		{"tab", "a\tb", "control", nil},
		{"DEL", "a\x7fb", "control", nil},
		{"encoded DEL", "a%7Fb", "encoded", nil},
		{"space", "a b", "percent-encode", nil},
		{"non-ASCII", "a/é", "percent-encode", nil},
		{"angle bracket", "a<b", "percent-encode", nil},
		{"bad escape", "a%zz", "malformed", nil},
		{"short escape", "a%2", "malformed", nil},
		{"trailing percent", "a%", "malformed", nil},
		{"empty segment", "a//b", "empty segment", nil},
		{"semicolon", "a;b", "';'", nil},
		{"tomcat dotdot", "..;/x", "';'", nil},
		{"encoded semicolon", "a%3bb", "encoded", nil},
		{"empty query name", "/x", "query", map[string]string{"": "v"}},
	}
	for _, tc := range notAllowed {
		t.Run(tc.name, func(t *testing.T) {
			u, err := BuildURL("https://analytics.adobe.io/prefix", tc.path, tc.query)
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("BuildURL(%q) = %v, %v; want ErrNotAllowed", tc.path, u, err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("BuildURL(%q) = %q; want it to say %s", tc.path, err, tc.why)
			}
		})
	}

	badBase := []string{
		"",
		"analytics.adobe.io/api",
		"ftp://analytics.adobe.io",
		"https://",
		"https:///x",
		"mailto:someone@example.com",
		"https://user:SECRET-pw@analytics.adobe.io",
		"https://analytics.adobe.io?x=1",
		"https://analytics.adobe.io/?",
		"https://analytics.adobe.io#f",
		"https://analytics.adobe.io/a/../b",
		"https://analytics.adobe.io/a%2fb",
		"https://analytics.adobe.io/a//b",
		"https://analytics.adobe.io/a;b",
		"http://[::1",
		"http://h:port",
	}
	for _, base := range badBase {
		t.Run("base "+base, func(t *testing.T) {
			u, err := BuildURL(base, "/x", nil)
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("BuildURL(%q) = %v, %v; want ErrBadTarget", base, u, err)
			}
			noSecret(t, err)
		})
	}
}

func TestOrigin(t *testing.T) {
	same := [][2]string{
		{"https://analytics.adobe.io/a", "https://ANALYTICS.adobe.io:443/b"},
		{"http://127.0.0.1/a", "http://127.0.0.1:80/"},
		{"HTTP://[::1]:8080", "http://[::1]:8080/x"},
	}
	differ := [][2]string{
		{"https://analytics.adobe.io", "http://analytics.adobe.io"},
		{"https://analytics.adobe.io", "https://analytics.adobe.io:8443"},
		{"https://analytics.adobe.io", "https://analytics.adobe.io.evil.example"},
		{"http://127.0.0.1:1", "http://127.0.0.1:2"},
	}
	for _, pair := range same {
		if a, b := origin(mustParse(t, pair[0])), origin(mustParse(t, pair[1])); a != b {
			t.Errorf("origin(%s) = %s, origin(%s) = %s; want equal", pair[0], a, pair[1], b)
		}
	}
	for _, pair := range differ {
		if a, b := origin(mustParse(t, pair[0])), origin(mustParse(t, pair[1])); a == b {
			t.Errorf("origin(%s) = origin(%s) = %s; want different", pair[0], pair[1], a)
		}
	}
}
