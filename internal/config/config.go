package config

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker/broker"
)

// Defaults of the top-level fields.
const (
	DefaultListen        = "127.0.0.1:7443"
	DefaultMetricsListen = "127.0.0.1:9090"
	DefaultDataDir       = "./tokenbroker-data"
	DefaultKeyringFile   = "./keyring.json"
	DefaultEtcdPrefix    = "/tokenbroker/"
	DefaultDialTimeout   = Duration(5e9) // 5s
	DefaultLogLevel      = "info"
	DefaultLogFormat     = "json"
)

// File is the configuration file. Fields with a non-empty default have no
// omitempty, so that a marshalled File (the effective configuration) parses
// back to the same File.
type File struct {
	// Listen is the gRPC listen address, host:port.
	Listen string `json:"listen"`
	// MetricsListen serves /metrics, /healthz and /readyz over HTTP; ""
	// disables it.
	MetricsListen string `json:"metrics_listen"`
	// ReplicaID names this replica to the others; default: the host name, "-"
	// and a random suffix.
	ReplicaID string `json:"replica_id,omitempty"`
	// Advertise is the address other replicas and status show for this one;
	// default: Listen (with the host name when Listen has no host or an
	// unspecified address).
	Advertise string `json:"advertise,omitempty"`
	// DataDir is the embedded etcd's data directory (used when
	// Etcd.Endpoints is empty).
	DataDir string `json:"data_dir"`
	Etcd    Etcd   `json:"etcd"`
	// KeyringFile is the keyring sealing tokens at rest (broker/seal File).
	// Required with external etcd; may be "" with embedded etcd only.
	KeyringFile string `json:"keyring_file"`
	TLS         TLS    `json:"tls"`
	Auth        Auth   `json:"auth"`
	Log         Log    `json:"log"`
	Timing      Timing `json:"timing"`
	Connections []Conn `json:"connections"`
}

// Etcd says where the shared state lives.
type Etcd struct {
	// Endpoints of an external cluster; empty runs a single-node etcd inside
	// the process, in DataDir.
	Endpoints []string `json:"endpoints,omitempty"`
	// Prefix of every key the broker writes; it ends with "/".
	Prefix   string `json:"prefix"`
	Username string `json:"username,omitempty"`
	// The password comes from PasswordFile or PasswordEnv, never inline.
	PasswordFile string   `json:"password_file,omitempty"`
	PasswordEnv  string   `json:"password_env,omitempty"`
	DialTimeout  Duration `json:"dial_timeout"`
	TLS          EtcdTLS  `json:"tls"`
}

// EtcdTLS is the client side of TLS to etcd.
type EtcdTLS struct {
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// IsZero reports whether no TLS setting is given.
func (t EtcdTLS) IsZero() bool { return t == EtcdTLS{} }

// TLS is the gRPC server's TLS.
type TLS struct {
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ClientCAFile, when set, turns on mTLS: callers presenting a
	// certificate signed by it are identified by it.
	ClientCAFile string `json:"client_ca_file,omitempty"`
	// Insecure serves plaintext gRPC. It must be said explicitly; only then
	// may CertFile be empty.
	Insecure bool `json:"insecure,omitempty"`
}

// Auth is how callers without a certificate authenticate.
type Auth struct {
	APIKeys []APIKey `json:"api_keys,omitempty"`
	// ReflectionRequiresAuth puts gRPC server reflection behind
	// authentication.
	ReflectionRequiresAuth bool `json:"reflection_requires_auth,omitempty"`
}

// APIKey is a caller known by an API key; only the key's SHA-256 is stored
// (see HashAPIKey and `tokenbroker apikey`).
type APIKey struct {
	Name string `json:"name"`
	// SHA256 is 64 hex digits; WithDefaults lower-cases it.
	SHA256 string `json:"sha256"`
}

// Log configures the process log.
type Log struct {
	Level  string `json:"level"`  // debug, info, warn or error
	Format string `json:"format"` // json or text
}

// Timing is broker.Timing in the file; 0 means the default, as in
// broker.Timing.WithDefaults.
type Timing struct {
	RefreshAt         float64  `json:"refresh_at"`
	Jitter            float64  `json:"jitter"`
	ExpiryMargin      Duration `json:"expiry_margin"`
	MinDemandInterval Duration `json:"min_demand_interval"`
	BackoffMin        Duration `json:"backoff_min"`
	BackoffMax        Duration `json:"backoff_max"`
	TokenCallTimeout  Duration `json:"token_call_timeout"`
	ClaimTTL          Duration `json:"claim_ttl"`
	Wait              Duration `json:"wait"`
	SessionTTL        Duration `json:"session_ttl"`
}

// Broker converts t to broker.Timing (defaults not applied).
func (t Timing) Broker() broker.Timing {
	return broker.Timing{
		RefreshAt:         t.RefreshAt,
		Jitter:            t.Jitter,
		ExpiryMargin:      t.ExpiryMargin.D(),
		MinDemandInterval: t.MinDemandInterval.D(),
		BackoffMin:        t.BackoffMin.D(),
		BackoffMax:        t.BackoffMax.D(),
		TokenCallTimeout:  t.TokenCallTimeout.D(),
		ClaimTTL:          t.ClaimTTL.D(),
		Wait:              t.Wait.D(),
		SessionTTL:        t.SessionTTL.D(),
	}
}

func timingFrom(t broker.Timing) Timing {
	return Timing{
		RefreshAt:         t.RefreshAt,
		Jitter:            t.Jitter,
		ExpiryMargin:      Duration(t.ExpiryMargin),
		MinDemandInterval: Duration(t.MinDemandInterval),
		BackoffMin:        Duration(t.BackoffMin),
		BackoffMax:        Duration(t.BackoffMax),
		TokenCallTimeout:  Duration(t.TokenCallTimeout),
		ClaimTTL:          Duration(t.ClaimTTL),
		Wait:              Duration(t.Wait),
		SessionTTL:        Duration(t.SessionTTL),
	}
}

// Conn is one connection: broker.ConnectionConfig with the secret's source
// instead of the secret, and who may use it.
type Conn struct {
	Name     string `json:"name"`
	Provider string `json:"provider"` // adobe (default) or oauth2
	Grant    string `json:"grant"`    // refresh_token (default) or client_credentials

	IMSURL   string `json:"ims_url,omitempty"`   // adobe only; default https://ims-na1.adobelogin.com
	TokenURL string `json:"token_url,omitempty"` // adobe: from ims_url; oauth2: required
	AuthURL  string `json:"auth_url,omitempty"`

	ClientID string `json:"client_id"`
	// The client secret comes from exactly one of these; neither is allowed
	// only for refresh_token (public clients).
	ClientSecretFile string   `json:"client_secret_file,omitempty"`
	ClientSecretEnv  string   `json:"client_secret_env,omitempty"`
	AuthStyle        string   `json:"auth_style"` // auto (default), basic or form
	Scopes           []string `json:"scopes,omitempty"`

	APIBaseURL      string            `json:"api_base_url,omitempty"`
	APIKey          string            `json:"api_key,omitempty"`
	GlobalCompanyID string            `json:"global_company_id,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`

	RefreshTokenLifetime Duration `json:"refresh_token_lifetime,omitempty"`
	RefreshTokenWarning  Duration `json:"refresh_token_warning,omitempty"`

	Access Access `json:"access"`
}

// Access lists the callers (API key names or certificate identities; "*" is
// every authenticated caller) granted each permission on a connection. It has
// the fields of server.Access, so server.Access(a) converts it.
type Access struct {
	Token []string `json:"token,omitempty"` // GetToken, Invalidate
	Call  []string `json:"call,omitempty"`  // CallAnalytics only
	Admin []string `json:"admin,omitempty"` // Admin service
}

// Config is the connection as the broker sees it, with the provider's
// defaults applied and without its secret (which Broker resolves).
func (c Conn) Config() broker.ConnectionConfig {
	return broker.ConnectionConfig{
		Name:                 c.Name,
		Provider:             c.Provider,
		Grant:                c.Grant,
		IMSURL:               c.IMSURL,
		TokenURL:             c.TokenURL,
		AuthURL:              c.AuthURL,
		ClientID:             c.ClientID,
		AuthStyle:            c.AuthStyle,
		Scopes:               c.Scopes,
		APIBaseURL:           c.APIBaseURL,
		APIKey:               c.APIKey,
		GlobalCompanyID:      c.GlobalCompanyID,
		Headers:              c.Headers,
		RefreshTokenLifetime: c.RefreshTokenLifetime.D(),
		RefreshTokenWarning:  c.RefreshTokenWarning.D(),
	}.WithDefaults()
}

// Default is the File that Parse decodes a file over: every top-level
// default, no connections and no callers.
func Default() *File {
	return &File{
		Listen:        DefaultListen,
		MetricsListen: DefaultMetricsListen,
		DataDir:       DefaultDataDir,
		KeyringFile:   DefaultKeyringFile,
		Etcd:          Etcd{Prefix: DefaultEtcdPrefix, DialTimeout: DefaultDialTimeout},
		Log:           Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Timing:        timingFrom(broker.DefaultTiming),
	}
}

// WithDefaults returns a copy of f with the defaults of empty fields filled
// in. f is not modified. It fills:
//
//   - listen, data_dir, log.level, log.format, etcd.prefix, etcd.dial_timeout
//     when empty
//     (metrics_listen and keyring_file are not: "" means off for them;
//     Default holds their defaults);
//   - replica_id: host name + "-" + 8 random lower-case letters and digits;
//   - advertise: listen, with the host name in place of an empty or
//     unspecified host;
//   - timing: zero fields from broker.DefaultTiming;
//   - each connection: broker.ConnectionConfig.WithDefaults (provider adobe,
//     grant refresh_token, auth_style auto; adobe: ims_url, token_url,
//     auth_url, api_base_url, api_key = client_id, refresh_token_lifetime
//     336h for refresh_token; refresh_token_warning = lifetime/7);
//   - auth.api_keys[].sha256 lower-cased.
func (f *File) WithDefaults() *File {
	g := *f
	if g.Listen == "" {
		g.Listen = DefaultListen
	}
	if g.Log.Level == "" {
		g.Log.Level = DefaultLogLevel
	}
	if g.Log.Format == "" {
		g.Log.Format = DefaultLogFormat
	}
	if g.DataDir == "" {
		g.DataDir = DefaultDataDir
	}
	if g.Etcd.Prefix == "" {
		g.Etcd.Prefix = DefaultEtcdPrefix
	}
	if g.Etcd.DialTimeout == 0 {
		g.Etcd.DialTimeout = DefaultDialTimeout
	}
	if g.ReplicaID == "" {
		g.ReplicaID = defaultReplicaID()
	}
	if g.Advertise == "" {
		g.Advertise = defaultAdvertise(g.Listen)
	}
	g.Timing = timingFrom(g.Timing.Broker().WithDefaults())
	if f.Auth.APIKeys != nil {
		g.Auth.APIKeys = make([]APIKey, len(f.Auth.APIKeys))
		for i, k := range f.Auth.APIKeys {
			k.SHA256 = strings.ToLower(k.SHA256)
			g.Auth.APIKeys[i] = k
		}
	}
	if f.Connections != nil {
		g.Connections = make([]Conn, len(f.Connections))
		for i, c := range f.Connections {
			bc := c.Config()
			c.Provider, c.Grant, c.AuthStyle = bc.Provider, bc.Grant, bc.AuthStyle
			c.IMSURL, c.TokenURL, c.AuthURL = bc.IMSURL, bc.TokenURL, bc.AuthURL
			c.APIBaseURL, c.APIKey = bc.APIBaseURL, bc.APIKey
			c.RefreshTokenLifetime = Duration(bc.RefreshTokenLifetime)
			c.RefreshTokenWarning = Duration(bc.RefreshTokenWarning)
			g.Connections[i] = c
		}
	}
	return &g
}

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func defaultReplicaID() string {
	host, err := os.Hostname()
	host = strings.Trim(notIDChars.ReplaceAllString(host, "-"), "-._")
	if err != nil || host == "" {
		host = "tokenbroker"
	}
	if len(host) > 100 {
		host = host[:100]
	}
	return host + "-" + strings.ToLower(rand.Text()[:8])
}

func defaultAdvertise(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil && h != "" {
			return net.JoinHostPort(h, port)
		}
	}
	return listen
}

// Embedded reports whether the broker runs its own single-node etcd (no
// etcd.endpoints).
func (f *File) Embedded() bool { return len(f.Etcd.Endpoints) == 0 }

// Access returns each connection's access lists by connection name.
func (f *File) Access() map[string]Access {
	m := make(map[string]Access, len(f.Connections))
	for _, c := range f.Connections {
		m[c.Name] = c.Access
	}
	return m
}

// APIKeyHashes maps the lower-case hex SHA-256 of each API key to its
// caller's name (server.Policy.APIKeys).
func (f *File) APIKeyHashes() map[string]string {
	m := make(map[string]string, len(f.Auth.APIKeys))
	for _, k := range f.Auth.APIKeys {
		m[strings.ToLower(k.SHA256)] = k.Name
	}
	return m
}

// Conn returns the connection called name.
func (f *File) Conn(name string) (Conn, bool) {
	for _, c := range f.Connections {
		if c.Name == name {
			return c, true
		}
	}
	return Conn{}, false
}

// HashAPIKey is the lower-case hex SHA-256 under which an API key is
// configured (auth.api_keys[].sha256).
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// maxFileSize bounds a config file.
const maxFileSize = 1 << 20

// Parse decodes and validates a config file. It starts from Default, decodes
// data over it, applies WithDefaults and runs Validate. Its error, if any, is
// Problems with every problem found: syntax, unknown fields, wrong types and
// invalid values.
func Parse(data []byte) (*File, error) {
	if len(data) > maxFileSize {
		return nil, Problems{{Message: fmt.Sprintf("config is %d bytes, more than the limit of %d", len(data), maxFileSize)}}
	}
	// A config file is UTF-8 text. Anything else is refused before the YAML
	// parser sees it: go.yaml.in/yaml/v2's reader can loop forever on some
	// malformed byte sequences (found by FuzzParse).
	if !utf8.Valid(data) {
		return nil, Problems{{Message: "config is not UTF-8 text"}}
	}
	if i := bytes.IndexFunc(data, func(r rune) bool {
		return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f || r == 0xfeff
	}); i >= 0 {
		return nil, Problems{{Message: fmt.Sprintf("config holds a control character or byte-order mark at byte %d", i)}}
	}
	f := Default()
	probs := decodeYAML(data, f)
	for _, p := range probs {
		if p.Path == "" { // not YAML: nothing else is meaningful
			return nil, probs
		}
	}
	f = f.WithDefaults()
	decoding := probs
	for _, p := range f.Validate() {
		if !covered(decoding, p.Path) {
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return nil, probs
	}
	return f, nil
}

// covered reports whether a decoding problem was found at path or above it:
// the value there is not what the file says, so checking it says nothing.
func covered(decoding Problems, path string) bool {
	for _, p := range decoding {
		if path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}

// Load reads and parses the file at path. Problems are reported as an error
// whose every line starts with path; errors.As finds the Problems in it.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, &fileError{path: path, err: err}
	}
	return f, nil
}

type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i, l := range lines {
		lines[i] = e.path + ": " + l
	}
	return strings.Join(lines, "\n")
}

func (e *fileError) Unwrap() error { return e.err }
