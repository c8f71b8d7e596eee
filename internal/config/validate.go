package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/tokenbroker/tokenbroker/broker"
)

// secretPlaceholder stands in for a client secret that Validate does not
// read, so that broker.ConnectionConfig.Validate checks everything else.
const secretPlaceholder = "(not read by Validate)"

var (
	replicaIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hexSHA256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	hostnameRE  = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$`)
	headerRE    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// Validate returns every problem of f, each with its field path. It expects
// the defaults applied (Parse does; for a File built in code, call it on
// f.WithDefaults()). It reads no file: whether secret files exist is for
// Broker to find out.
func (f *File) Validate() Problems {
	v := &validator{}
	listenOK := v.addr("listen", f.Listen, addrListen)
	if f.MetricsListen != "" {
		v.addr("metrics_listen", f.MetricsListen, addrListen)
		if f.MetricsListen == f.Listen && !strings.HasSuffix(f.Listen, ":0") {
			v.bad("metrics_listen", "is the same address as listen")
		}
	}
	if !replicaIDRE.MatchString(f.ReplicaID) {
		v.bad("replica_id", "%q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", f.ReplicaID)
	}
	if f.Advertise != f.Listen || listenOK { // else the default copied a bad listen
		v.addr("advertise", f.Advertise, addrAdvertise)
	}
	if f.Embedded() {
		v.path("data_dir", f.DataDir, "is required with embedded etcd (etcd.endpoints empty)")
		v.path("keyring_file", f.KeyringFile, "")
	} else {
		v.path("data_dir", f.DataDir, "")
		v.path("keyring_file", f.KeyringFile, "is required with external etcd: every replica must seal with the same keys")
	}
	v.etcd(f.Etcd)
	v.tls(f.TLS)
	v.auth(f.Auth, f.TLS)
	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "%q is not one of debug, info, warn, error", f.Log.Level)
	}
	switch f.Log.Format {
	case "json", "text":
	default:
		v.bad("log.format", "%q is not one of json, text", f.Log.Format)
	}
	v.broker(f.Timing.Broker().WithDefaults().Validate("timing."))

	if len(f.Connections) == 0 {
		v.bad("connections", "no connections are configured")
	}
	seen := map[string]int{}
	for i, c := range f.Connections {
		prefix := fmt.Sprintf("connections[%d].", i)
		v.conn(prefix, c)
		if j, dup := seen[c.Name]; dup && c.Name != "" {
			v.bad(prefix+"name", "%q is also connections[%d]", c.Name, j)
		} else if !dup {
			seen[c.Name] = i
		}
	}
	v.probs.sort()
	return v.probs
}

type validator struct {
	probs Problems
}

func (v *validator) bad(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// broker maps errors of the broker package's Validate methods, which start
// with a field path, onto problems.
func (v *validator) broker(errs []error) {
	for _, err := range errs {
		path, msg, ok := strings.Cut(err.Error(), ": ")
		if !ok {
			path, msg = "", err.Error()
		}
		v.probs = append(v.probs, Problem{Path: path, Message: msg})
	}
}

type addrKind int

const (
	addrListen    addrKind = iota // host may be empty, port may be 0
	addrAdvertise                 // host required
	addrDial                      // host and a non-zero port required
)

// addr checks a host:port address and reports whether it is valid.
func (v *validator) addr(path, s string, kind addrKind) bool {
	n := len(v.probs)
	if s == "" {
		v.bad(path, "is required")
		return false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.bad(path, "%q is not host:port", s)
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && kind == addrDial) {
		v.bad(path, "%q: %q is not a port number", s, port)
	}
	switch {
	case host == "" && kind != addrListen:
		v.bad(path, "%q has no host", s)
	case host != "" && !validHost(host):
		v.bad(path, "%q: %q is not a host name or IP address", s, host)
	}
	return len(v.probs) == n
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && hostnameRE.MatchString(h)
}

// path checks a file or directory name: required when missing is not "".
func (v *validator) path(field, p, missing string) {
	if p == "" {
		if missing != "" {
			v.bad(field, "%s", missing)
		}
		return
	}
	if strings.ContainsFunc(p, unicode.IsControl) {
		v.bad(field, "contains control characters")
	}
}

func (v *validator) secretSource(prefix, fileField, file, envField, env string) {
	v.path(prefix+fileField, file, "")
	if env != "" && !envNameRE.MatchString(env) {
		// The value is not quoted: it might be the secret itself.
		v.bad(prefix+envField, "is not an environment variable name (letters, digits and '_', not starting with a digit)")
	}
	if file != "" && env != "" {
		v.bad(prefix+envField, "is set together with %s: use one", fileField)
	}
}

func (v *validator) etcd(e Etcd) {
	seen := map[string]bool{}
	for i, ep := range e.Endpoints {
		path := fmt.Sprintf("etcd.endpoints[%d]", i)
		v.endpoint(path, ep, !e.TLS.IsZero())
		if seen[ep] {
			v.bad(path, "%q is listed twice", redactURL(ep))
		}
		seen[ep] = true
	}
	if !strings.HasSuffix(e.Prefix, "/") {
		v.bad("etcd.prefix", "%q must end with \"/\" (so that no other prefix starts with it)", e.Prefix)
	} else if strings.ContainsFunc(e.Prefix, unicode.IsControl) {
		v.bad("etcd.prefix", "contains control characters")
	}
	if e.DialTimeout <= 0 {
		v.bad("etcd.dial_timeout", "%v must be positive", e.DialTimeout)
	}
	v.secretSource("etcd.", "password_file", e.PasswordFile, "password_env", e.PasswordEnv)
	password := e.PasswordFile != "" || e.PasswordEnv != ""
	if e.Username != "" && !password {
		v.bad("etcd.username", "is set without password_file or password_env")
	}
	if e.Username == "" && password {
		v.bad("etcd.username", "is required with a password")
	}
	if e.Username != "" && strings.ContainsFunc(e.Username, unicode.IsControl) {
		v.bad("etcd.username", "contains control characters")
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		v.bad("etcd.tls.key_file", "cert_file and key_file go together")
	}
	v.path("etcd.tls.ca_file", e.TLS.CAFile, "")
	v.path("etcd.tls.cert_file", e.TLS.CertFile, "")
	v.path("etcd.tls.key_file", e.TLS.KeyFile, "")
	if len(e.Endpoints) == 0 {
		const why = "is for external etcd, but etcd.endpoints is empty (embedded etcd)"
		if e.Username != "" {
			v.bad("etcd.username", why)
		}
		if !e.TLS.IsZero() {
			v.bad("etcd.tls", why)
		}
	}
}

// endpoint checks an etcd endpoint: an http(s) URL or host:port.
func (v *validator) endpoint(path, ep string, tls bool) {
	if !strings.Contains(ep, "://") {
		if strings.Contains(ep, "@") {
			v.bad(path, "must not hold user information: use etcd.username and password_file or password_env")
			return
		}
		v.addr(path, ep, addrDial)
		return
	}
	ep = redactURL(ep)
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		v.bad(path, "%q is not an http(s)://host:port URL or host:port", ep)
		return
	}
	if !validHost(u.Hostname()) {
		v.bad(path, "%q: %q is not a host name or IP address", ep, u.Hostname())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			v.bad(path, "%q: port %q is not a number from 1 to 65535", ep, p)
		}
	}
	if tls && u.Scheme == "http" {
		v.bad(path, "%q is plain http, but etcd.tls is set", ep)
	}
}

func (v *validator) tls(t TLS) {
	for _, p := range []struct{ field, value string }{
		{"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}, {"tls.client_ca_file", t.ClientCAFile},
	} {
		v.path(p.field, p.value, "")
	}
	if t.Insecure {
		if t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" {
			v.bad("tls.insecure", "is true, but certificate files are set: use one or the other")
		}
		return
	}
	if t.CertFile == "" {
		v.bad("tls.cert_file", "is required (or set tls.insecure: true for plaintext gRPC)")
	}
	if t.KeyFile == "" {
		v.bad("tls.key_file", "is required (or set tls.insecure: true for plaintext gRPC)")
	}
}

func (v *validator) auth(a Auth, t TLS) {
	names := map[string]int{}
	hashes := map[string]int{}
	for i, k := range a.APIKeys {
		prefix := fmt.Sprintf("auth.api_keys[%d].", i)
		if msg := callerProblem(k.Name); msg != "" {
			v.bad(prefix+"name", "%s", msg)
		} else if k.Name == "*" {
			v.bad(prefix+"name", `"*" is reserved: in access lists it means every authenticated caller`)
		} else if j, dup := names[k.Name]; dup {
			v.bad(prefix+"name", "%q is also auth.api_keys[%d]", k.Name, j)
		} else {
			names[k.Name] = i
		}
		if !hexSHA256RE.MatchString(k.SHA256) {
			v.bad(prefix+"sha256", "must be 64 hex digits: the SHA-256 of the key (`tokenbroker apikey` prints it)")
		} else if j, dup := hashes[strings.ToLower(k.SHA256)]; dup {
			v.bad(prefix+"sha256", "is also auth.api_keys[%d]: one key, one caller", j)
		} else {
			hashes[strings.ToLower(k.SHA256)] = i
		}
	}
	if len(a.APIKeys) == 0 && (t.ClientCAFile == "" || t.Insecure) {
		v.bad("auth.api_keys", "no caller can authenticate: add API keys, or client certificates with tls.client_ca_file")
	}
}

// callerProblem says what is wrong with a caller name, or "".
func callerProblem(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 256:
		return "is longer than 256 bytes"
	case strings.TrimSpace(name) != name:
		return fmt.Sprintf("%q has leading or trailing spaces", name)
	case strings.ContainsFunc(name, unicode.IsControl):
		return "contains control characters"
	}
	return ""
}

func (v *validator) conn(prefix string, c Conn) {
	bc := c.Config()
	bc.ClientSecret = secretPlaceholder
	imsOK := true
	if c.IMSURL != "" {
		if bc.Provider != broker.ProviderAdobe {
			v.bad(prefix+"ims_url", "is for provider adobe only")
		} else if u, err := url.Parse(c.IMSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") ||
			u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			v.bad(prefix+"ims_url", "%q is not an http(s) URL without user, query or fragment", redactURL(c.IMSURL))
			imsOK = false
		}
	}
	base := strings.TrimRight(c.IMSURL, "/")
	derived := map[string]bool{ // URLs made from a bad ims_url: their problem is that one
		prefix + "token_url": !imsOK && bc.TokenURL == base+"/ims/token/v3",
		prefix + "auth_url":  !imsOK && bc.AuthURL == base+"/ims/authorize/v2",
	}
	var errs []error
	for _, err := range bc.Validate(prefix) { // the broker quotes bad URLs whole, user info and all
		msg := err.Error()
		if path, _, _ := strings.Cut(msg, ": "); derived[path] {
			continue
		}
		for _, u := range []string{bc.TokenURL, bc.AuthURL, bc.APIBaseURL} {
			if r := redactURL(u); r != u {
				msg = strings.ReplaceAll(msg, strconv.Quote(u), strconv.Quote(r))
			}
		}
		errs = append(errs, errors.New(msg))
	}
	v.broker(errs)

	v.secretSource(prefix, "client_secret_file", c.ClientSecretFile, "client_secret_env", c.ClientSecretEnv)
	if bc.Grant == broker.GrantClientCredentials && c.ClientSecretFile == "" && c.ClientSecretEnv == "" {
		v.bad(prefix+"client_secret_file", "client_credentials needs client_secret_file or client_secret_env")
	}
	if strings.ContainsFunc(c.ClientID, unicode.IsControl) || strings.TrimSpace(c.ClientID) != c.ClientID {
		v.bad(prefix+"client_id", "has spaces or control characters around or in it")
	}
	for _, f := range []struct{ name, value string }{
		{"api_key", bc.APIKey}, {"global_company_id", c.GlobalCompanyID},
	} {
		if strings.ContainsFunc(f.value, unicode.IsControl) {
			v.bad(prefix+f.name, "contains control characters")
		}
	}
	offline := false
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			v.bad(fmt.Sprintf("%sscopes[%d]", prefix, i), "%q is not a scope: no spaces, one scope per item", s)
		}
		offline = offline || s == "offline_access"
	}
	if bc.Provider == broker.ProviderAdobe && bc.Grant == broker.GrantRefreshToken && len(c.Scopes) > 0 && !offline {
		v.bad(prefix+"scopes", "adobe refresh tokens need the offline_access scope")
	}
	for h, val := range c.Headers {
		if !headerRE.MatchString(h) {
			v.bad(prefix+"headers."+h, "is not a valid header name")
		}
		if strings.ContainsFunc(val, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
			v.bad(prefix+"headers."+h, "the value contains control characters")
		}
	}
	if c.RefreshTokenWarning < 0 {
		v.bad(prefix+"refresh_token_warning", "must not be negative")
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"token", c.Access.Token}, {"call", c.Access.Call}, {"admin", c.Access.Admin}} {
		for i, caller := range l.list {
			if msg := callerProblem(caller); msg != "" {
				v.bad(fmt.Sprintf("%saccess.%s[%d]", prefix, l.name, i), "%s", msg)
			}
		}
	}
}

// redactURL replaces the user information of a URL, which may hold a
// password, so that the URL can be quoted in a problem. It errs on the side
// of hiding: everything between "://" and the last "@" goes.
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	at := strings.LastIndex(s[i+3:], "@")
	if at < 0 {
		return s
	}
	return s[:i+3] + "REDACTED@" + s[i+3+at+1:]
}
