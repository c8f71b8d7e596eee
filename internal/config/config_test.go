package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"sigs.k8s.io/yaml"
)

const (
	exampleFile = "../../examples/tokenbroker.yaml"
	brokenFile  = "../../examples/broken.yaml"
)

// minimal is the smallest valid config, with the secret file as %s.
const minimal = `
tls: {insecure: true}
auth:
  api_keys:
    - {name: svc, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}
connections:
  - name: adobe-prod
    client_id: abc
`

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) holds no Problems", err, err)
	}
	return ps
}

func sortedPaths(ps Problems) []string {
	paths := ps.Paths()
	slices.Sort(paths)
	return slices.Compact(paths)
}

func TestExampleParses(t *testing.T) {
	f, err := Load(exampleFile)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if ps := f.Validate(); len(ps) > 0 {
		t.Fatalf("Validate after Load:\n%v", ps)
	}
	if !f.Embedded() {
		t.Error("the example runs embedded etcd")
	}
	if got := len(f.Connections); got != 3 {
		t.Fatalf("%d connections, want 3", got)
	}
	web, ok := f.Conn("adobe-prod")
	if !ok {
		t.Fatal("no connection adobe-prod")
	}
	if web.TokenURL != broker.AdobeIMSURL+"/ims/token/v3" || web.APIKey != web.ClientID || web.APIBaseURL != broker.AdobeAnalyticsURL {
		t.Errorf("adobe defaults not applied: %+v", web)
	}
	s2s, _ := f.Conn("adobe-s2s")
	if s2s.Grant != broker.GrantClientCredentials || s2s.ClientSecretEnv != "ADOBE_S2S_CLIENT_SECRET" || s2s.RefreshTokenLifetime != 0 {
		t.Errorf("adobe-s2s: %+v", s2s)
	}
	generic, _ := f.Conn("billing-api")
	if generic.Provider != broker.ProviderOAuth2 || generic.IMSURL != "" || generic.APIKey != "" {
		t.Errorf("billing-api took adobe defaults: %+v", generic)
	}
	access := f.Access()
	if got := access["adobe-prod"].Call; !slices.Equal(got, []string{"dashboards"}) {
		t.Errorf("adobe-prod call access %v", got)
	}
	if got := access["billing-api"].Token; !slices.Equal(got, []string{"spiffe://corp.example.com/ns/billing/sa/invoicer"}) {
		t.Errorf("billing-api token access %v", got)
	}
	hashes := f.APIKeyHashes()
	if len(hashes) != 3 || hashes["c7faa42a54e85932e35a593a0cfc60fe39ebbc628d5d52a5cbb5b36b759f4f33"] != "reporting-service" {
		t.Errorf("APIKeyHashes: %v", hashes)
	}
	if f.TLS.ClientCAFile == "" || !f.Auth.ReflectionRequiresAuth || f.ReplicaID != "broker-a" {
		t.Errorf("top-level fields: %+v", f)
	}

	// The secret files of the example do not exist here: Broker says which,
	// and nothing else.
	_, err = f.Broker()
	ps := problemsOf(t, err)
	want := []string{"connections[0].client_secret_file", "connections[1].client_secret_env", "connections[2].client_secret_file"}
	if got := sortedPaths(ps); !slices.Equal(got, want) {
		t.Errorf("Broker problems at %v, want %v:\n%v", got, want, ps)
	}
	if !strings.Contains(err.Error(), "/run/secrets/adobe-prod-client-secret") || !strings.Contains(err.Error(), "ADOBE_S2S_CLIENT_SECRET") {
		t.Errorf("Broker error does not name the file and the variable:\n%v", err)
	}
}

func TestExampleKeyringIsAKeyring(t *testing.T) {
	raw, err := os.ReadFile("../../examples/keyring.example.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "EXAMPLE ONLY") {
		t.Error("the example keyring does not say it is an example")
	}
	// seal.Load's format: {"primary": ..., "keys": {...}}
	var kf struct {
		Primary string
		Keys    map[string]string
	}
	if err := json.Unmarshal(raw, &kf); err != nil || kf.Keys[kf.Primary] == "" {
		t.Errorf("not a keyring file: %v %+v", err, kf)
	}
}

func TestBrokenFileReportsEveryProblem(t *testing.T) {
	_, err := Load(brokenFile)
	ps := problemsOf(t, err)
	want := []string{
		"auth.api_keys[0].sha256",
		"connections[0].client_secret",
		"connections[0].client_secret_file",
		"connections[0].name",
		"connections[1].grant",
		"connections[1].scopes[1]",
		"connections[1].token_url",
		"etcd.endpoints[0]",
		"etcd.password",
		"etcd.prefix",
		"keyring_file",
		"listen",
		"log.colour",
		"log.level",
		"metrics_listen",
		"timing.claim_ttl",
		"timing.wait",
		"tls.cert_file",
		"tls.key_file",
	}
	if got := sortedPaths(ps); !slices.Equal(got, want) {
		t.Errorf("problems at\n%v\nwant\n%v\n%v", got, want, ps)
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems for %d paths:\n%v", len(ps), len(want), ps)
	}
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		if !strings.HasPrefix(line, brokenFile+": ") {
			t.Errorf("line does not name the file: %q", line)
		}
	}
	for _, secret := range []string{"hunter2", "s3cr3t"} {
		if strings.Contains(msg, secret) {
			t.Errorf("the error shows the inline secret %q:\n%s", secret, msg)
		}
	}
}

func TestManyProblemsInline(t *testing.T) {
	const doc = `
listen: ":7443"
advertise: ":7443"
metrics_listen: ":7443"
replica_id: "-bad"
data_dir: ""
etcd:
  endpoints: "not a list"
  dial_timeout: -1s
  username: root
tls:
  insecure: true
  cert_file: server.pem
auth:
  api_keys:
    - {name: a, sha256: E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855}
    - {name: a, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}
    - {name: " b", sha256: 12}
    - {name: "*", sha256: "0000000000000000000000000000000000000000000000000000000000000000"}
log: {format: xml}
timing:
  refresh_at: 2
  jitter: "a lot"
  session_ttl: 500ms
connections:
  - name: one
    client_id: a
    clientId: b
    client_secret_file: /s
    client_secret_env: "1BAD NAME"
    scopes: [openid]
    headers: {Authorization: x, "bad header": y, X-Ok: "a\nb"}
    ims_url: ftp://ims
  - name: one
    provider: oauth2
    token_url: https://user:hunter2@example.com/token
    client_id: b
    ims_url: https://ims.example.com
    refresh_token_lifetime: forever
    access: {token: [""], call: ["ok", 7], admin: "ops"}
  - 42
`
	_, err := Parse([]byte(doc))
	ps := problemsOf(t, err)
	want := []string{
		"advertise",
		"auth.api_keys[1].name",
		"auth.api_keys[1].sha256",
		"auth.api_keys[2].name",
		"auth.api_keys[2].sha256",
		"auth.api_keys[3].name",
		"connections[0].clientId",
		"connections[0].client_secret_env",
		"connections[0].headers.Authorization",
		"connections[0].headers.X-Ok",
		"connections[0].headers.bad header",
		"connections[0].ims_url",
		"connections[0].scopes",
		"connections[1].access.admin",
		"connections[1].access.call[1]",
		"connections[1].access.token[0]",
		"connections[1].ims_url",
		"connections[1].name",
		"connections[1].refresh_token_lifetime",
		"connections[1].token_url",
		"connections[2]",
		"etcd.dial_timeout",
		"etcd.endpoints",
		"etcd.username",
		"log.format",
		"metrics_listen",
		"replica_id",
		"timing.jitter",
		"timing.refresh_at",
		"timing.session_ttl",
		"tls.insecure",
	}
	if got := sortedPaths(ps); !slices.Equal(got, want) {
		t.Errorf("problems at\n%q\nwant\n%q\n%v", got, want, ps)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the password of a URL shows:\n%v", err)
	}
	if !strings.Contains(err.Error(), "headers.bad header: must be a string, not the boolean true (YAML reads unquoted yes") {
		t.Errorf("no hint at YAML booleans:\n%v", err)
	}
	if !strings.Contains(err.Error(), `did you mean "client_id"`) {
		t.Errorf("no suggestion for clientId:\n%v", err)
	}
}

func TestUnknownField(t *testing.T) {
	for _, tc := range []struct{ doc, path, name string }{
		{"listen_addr: x\n", "listen_addr", "listen_addr"},
		{"tls: {insecure: true, verify: false}\n", "tls.verify", "verify"},
		{"connections: [{name: a, client_id: b, secret_file: /x}]\n", "connections[0].secret_file", "secret_file"},
		{"Listen: 127.0.0.1:1\n", "Listen", "Listen"}, // names are case-sensitive
	} {
		_, err := Parse([]byte(tc.doc))
		ps := problemsOf(t, err)
		i := slices.IndexFunc(ps, func(p Problem) bool { return p.Path == tc.path })
		if i < 0 {
			t.Errorf("%q: no problem at %s:\n%v", tc.doc, tc.path, ps)
			continue
		}
		if !strings.Contains(ps[i].Message, `unknown field "`+tc.name+`"`) {
			t.Errorf("%q: %v", tc.doc, ps[i])
		}
	}
}

func TestInlineSecretsRejected(t *testing.T) {
	doc := minimal + "    client_secret: very-secret-value\n"
	doc = strings.Replace(doc, "tls:", "etcd: {password: other-secret-value}\ntls:", 1)
	_, err := Parse([]byte(doc))
	ps := problemsOf(t, err)
	if got, want := sortedPaths(ps), []string{"connections[0].client_secret", "etcd.password"}; !slices.Equal(got, want) {
		t.Fatalf("problems at %v, want %v:\n%v", got, want, ps)
	}
	for _, p := range ps {
		if !strings.Contains(p.Message, "_file") || !strings.Contains(p.Message, "_env") {
			t.Errorf("%v does not point to the file or environment variable", p)
		}
	}
	if strings.Contains(err.Error(), "secret-value") {
		t.Errorf("the error shows the secret:\n%v", err)
	}
}

func TestSyntaxErrors(t *testing.T) {
	for _, doc := range []string{
		"listen: [\n",
		"listen: a\nlisten: b\n",
		"\tlisten: a\n",
		"- a\n- b\n",
		"just a string",
	} {
		_, err := Parse([]byte(doc))
		ps := problemsOf(t, err)
		if len(ps) == 0 || ps[0].Path != "" || ps[0].Message == "" {
			t.Errorf("%q: %v", doc, ps)
		}
	}
	// A second document would be ignored by sigs.k8s.io/yaml: refused.
	for _, doc := range []string{"a: 1\n---\nb: 2\n", "a: 1\n...\nb: 2\n", "--- {a: 1}\n--- {b: 2}\n"} {
		_, err := Parse([]byte(doc))
		if ps := problemsOf(t, err); len(ps) != 1 || !strings.Contains(ps[0].Message, "second YAML document") {
			t.Errorf("%q: %v", doc, ps)
		}
	}
	for _, doc := range []string{"---\n" + minimal, "# c\n--- # c\n" + minimal + "...\n", "%YAML 1.1\n---\n" + minimal + "...\n# end\n"} {
		if _, err := Parse([]byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}

	_, err := Parse([]byte("listen: a\nlisten: b\n"))
	if !strings.Contains(err.Error(), "line 2") {
		t.Errorf("duplicate key without its line: %v", err)
	}
	_, err = Parse(make([]byte, maxFileSize+1))
	problemsOf(t, err)
}

func TestDefaults(t *testing.T) {
	f, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if f.Listen != DefaultListen || f.MetricsListen != DefaultMetricsListen || f.DataDir != DefaultDataDir ||
		f.KeyringFile != DefaultKeyringFile || f.Etcd.Prefix != DefaultEtcdPrefix || f.Etcd.DialTimeout.D() != 5*time.Second ||
		f.Log != (Log{"info", "json"}) || f.Advertise != DefaultListen {
		t.Errorf("defaults: %+v", f)
	}
	if f.Timing.Broker() != broker.DefaultTiming {
		t.Errorf("timing %+v, want %+v", f.Timing.Broker(), broker.DefaultTiming)
	}
	if !replicaIDRE.MatchString(f.ReplicaID) || !strings.Contains(f.ReplicaID, "-") {
		t.Errorf("replica id %q", f.ReplicaID)
	}
	c := f.Connections[0]
	if c.Provider != "adobe" || c.Grant != "refresh_token" || c.AuthStyle != "auto" ||
		c.RefreshTokenLifetime.D() != 336*time.Hour || c.RefreshTokenWarning.D() != 48*time.Hour {
		t.Errorf("connection defaults: %+v", c)
	}

	// Given explicitly, "" (or null) turns metrics off; other defaults stay.
	for _, off := range []string{`metrics_listen: ""`, "metrics_listen:", "metrics_listen: ~"} {
		f, err := Parse([]byte(off + "\netcd: {}\ntiming: {wait: 0}\n" + minimal))
		if err != nil {
			t.Fatal(err)
		}
		if f.MetricsListen != "" || f.Etcd.Prefix != DefaultEtcdPrefix || f.Timing.Wait.D() != broker.DefaultTiming.Wait {
			t.Errorf("%s: %+v", off, f)
		}
	}

	// The listen host is replaced by the host name in the advertised address.
	f, err = Parse([]byte("listen: ':7000'\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); f.Advertise != host+":7000" {
		t.Errorf("advertise %q", f.Advertise)
	}
}

func TestWithDefaultsDoesNotModify(t *testing.T) {
	f := &File{
		TLS:         TLS{Insecure: true},
		Auth:        Auth{APIKeys: []APIKey{{Name: "a", SHA256: strings.Repeat("AB", 32)}}},
		Connections: []Conn{{Name: "x", ClientID: "y"}},
	}
	g := f.WithDefaults()
	if f.Connections[0].Provider != "" || f.Auth.APIKeys[0].SHA256 != strings.Repeat("AB", 32) || f.Listen != "" {
		t.Errorf("WithDefaults modified f: %+v", f)
	}
	if g.Auth.APIKeys[0].SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("sha256 not lower-cased: %q", g.Auth.APIKeys[0].SHA256)
	}
	if ps := g.Validate(); len(ps) > 0 {
		t.Errorf("a File built in code:\n%v", ps)
	}
	if ps := f.Validate(); len(ps) == 0 {
		t.Error("Validate without defaults found nothing missing")
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{`"30s"`, 30 * time.Second},
		{"30s", 30 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"45", 45 * time.Second},
		{"1.5", 1500 * time.Millisecond},
		{"0", 0},
		{"-2s", -2 * time.Second},
		{"9223372036", 9223372036 * time.Second},
	} {
		var d Duration
		if err := yaml.Unmarshal([]byte(tc.yaml), &d); err != nil || d.D() != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.yaml, d, err, tc.want)
		}
	}
	for _, bad := range []string{`"30"`, "soon", "true", "[1]", "1e300", "9223372037", `"9999999999h"`} {
		var d Duration
		if err := yaml.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s: got %v, want an error", bad, d)
		}
	}
	b, err := json.Marshal(struct{ D Duration }{Duration(90 * time.Second)})
	if err != nil || string(b) != `{"D":"1m30s"}` {
		t.Errorf("MarshalJSON: %s %v", b, err)
	}

	f, err := Parse([]byte("timing: {backoff_max: 10m, wait: 12, expiry_margin: 2.5}\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if f.Timing.BackoffMax.D() != 10*time.Minute || f.Timing.Wait.D() != 12*time.Second || f.Timing.ExpiryMargin.D() != 2500*time.Millisecond {
		t.Errorf("timing %+v", f.Timing)
	}
	_, err = Parse([]byte("timing: {backoff_max: 10, backoff_min: 1m, wait: 1y}\n" + minimal))
	if got, want := sortedPaths(problemsOf(t, err)), []string{"timing.backoff_max", "timing.wait"}; !slices.Equal(got, want) {
		t.Errorf("problems at %v, want %v: %v", got, want, err)
	}
}

func TestBrokerResolvesSecrets(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("  file-secret-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TB_TEST_SECRET", "env-secret-5678\n")
	doc := minimal + "    client_secret_file: " + secretFile + `
  - name: s2s
    grant: client_credentials
    client_id: def
    client_secret_env: TB_TEST_SECRET
  - name: public
    client_id: ghi
`
	f, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Broker()
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{cfg.Connections[0].ClientSecret, cfg.Connections[1].ClientSecret, cfg.Connections[2].ClientSecret}; !slices.Equal(got, []string{"file-secret-1234", "env-secret-5678", ""}) {
		t.Errorf("secrets %q", got)
	}
	if cfg.Timing != broker.DefaultTiming || cfg.Connections[1].TokenURL != broker.AdobeIMSURL+"/ims/token/v3" {
		t.Errorf("broker config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}

	// Every failure names the file or the variable and never the secret.
	multi := filepath.Join(dir, "multi")
	empty := filepath.Join(dir, "empty")
	missing := filepath.Join(dir, "does-not-exist")
	os.WriteFile(multi, []byte("multi-secret-1\nmulti-secret-2\n"), 0o600)
	os.WriteFile(empty, []byte(" \n"), 0o600)
	t.Setenv("TB_TEST_EMPTY", "")
	for _, tc := range []struct{ file, env, path, names string }{
		{file: missing, path: "connections[0].client_secret_file", names: missing},
		{file: multi, path: "connections[0].client_secret_file", names: multi},
		{file: empty, path: "connections[0].client_secret_file", names: empty},
		{file: dir, path: "connections[0].client_secret_file", names: dir},
		{env: "TB_TEST_UNSET_VARIABLE", path: "connections[0].client_secret_env", names: "TB_TEST_UNSET_VARIABLE"},
		{env: "TB_TEST_EMPTY", path: "connections[0].client_secret_env", names: "TB_TEST_EMPTY"},
	} {
		g := *f
		g.Connections = slices.Clone(f.Connections)
		g.Connections[0].ClientSecretFile, g.Connections[0].ClientSecretEnv = tc.file, tc.env
		_, err := g.Broker()
		ps := problemsOf(t, err)
		if len(ps) != 1 || ps[0].Path != tc.path || !strings.Contains(ps[0].Message, tc.names) {
			t.Errorf("%+v: %v", tc, ps)
		}
		for _, secret := range []string{"secret-1", "secret-2", "1234", "5678"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%+v: the error shows the secret: %v", tc, err)
			}
		}
	}

	// An invalid File is not resolved.
	g := *f
	g.Listen = "nope"
	if _, err := g.Broker(); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Broker of an invalid File: %v", err)
	}
}

func TestEtcdPassword(t *testing.T) {
	if p, err := (Etcd{}).Password(); p != "" || err != nil {
		t.Errorf("no password: %q %v", p, err)
	}
	t.Setenv("TB_TEST_ETCD", "etcd-pw")
	if p, err := (Etcd{PasswordEnv: "TB_TEST_ETCD"}).Password(); p != "etcd-pw" || err != nil {
		t.Errorf("from env: %q %v", p, err)
	}
	_, err := (Etcd{PasswordFile: "/nonexistent/pw"}).Password()
	if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Path != "etcd.password_file" || !strings.Contains(ps[0].Message, "/nonexistent/pw") {
		t.Errorf("%v", ps)
	}
}

func TestExternalEtcd(t *testing.T) {
	doc := `
keyring_file: ""
etcd:
  endpoints: [https://e1:2379, "e2:2379", "http://e3:2379", "https://root:pw-in-url@e4:2379", "u:p@e5:2379", https://e1:2379]
  username: tb
  password_file: /run/secrets/etcd
  password_env: ETCD_PW
  tls: {ca_file: ca.pem, cert_file: c.pem}
` + minimal
	_, err := Parse([]byte(doc))
	ps := problemsOf(t, err)
	want := []string{"etcd.endpoints[2]", "etcd.endpoints[3]", "etcd.endpoints[4]", "etcd.endpoints[5]", "etcd.password_env", "etcd.tls.key_file", "keyring_file"}
	if got := sortedPaths(ps); !slices.Equal(got, want) {
		t.Errorf("problems at %v, want %v:\n%v", got, want, ps)
	}
	if strings.Contains(err.Error(), "pw-in-url") || strings.Contains(err.Error(), "u:p") {
		t.Errorf("user information shows:\n%v", err)
	}

	f, err := Parse([]byte("etcd: {endpoints: [\"127.0.0.1:2379\"]}\n" + minimal))
	if err != nil {
		t.Fatal(err)
	}
	if f.Embedded() {
		t.Error("Embedded with endpoints")
	}
}

func TestHashAPIKey(t *testing.T) {
	if got := HashAPIKey(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("HashAPIKey(\"\") = %s", got)
	}
	if got := HashAPIKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashAPIKey(abc) = %s", got)
	}
}

// The effective configuration, marshalled, parses back to itself.
func TestRoundTrip(t *testing.T) {
	f, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	again, _ := yaml.Marshal(g)
	if string(again) != string(out) {
		t.Errorf("round trip changed the file:\n%s\n---\n%s", out, again)
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{{Message: "whole file"}, {Path: "a.b", Message: "bad"}}
	if got := ps.Error(); got != "whole file\na.b: bad" {
		t.Errorf("%q", got)
	}
	ps = Problems{{Path: "connections[10].name"}, {Path: "connections[2].name"}, {Path: "auth"}, {Path: "connections[2].name"}}
	ps.sort()
	if got := ps.Paths(); !slices.Equal(got, []string{"auth", "connections[2].name", "connections[10].name"}) {
		t.Errorf("sorted %v", got)
	}
}
