package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcurlDocAddr is the demo's default address, which the command lines of
// docs/grpcurl.md use; the test puts the address of its own demo in its place.
const grpcurlDocAddr = "127.0.0.1:7443"

// grpcurlAPIKeyFlags is how docs/grpcurl.md passes an API key.
const grpcurlAPIKeyFlags = `-expand-headers -H 'authorization: Bearer ${TOKENBROKER_API_KEY}'`

// grpcurlState carries what one command line learns to the checks of the next.
type grpcurlState struct {
	generation uint64 // of the last token or connection seen
	fakeURL    string // the demo's fake Adobe
	dir        string // working directory of grpcurl (holds seed.json)
}

// grpcurlCommands are the command lines of the demo section of docs/grpcurl.md
// (the "Operating with grpcurl" section of the README), in the order they run.
// Each must appear there verbatim, and each grpcurl line there that targets
// the demo must be here.
var grpcurlCommands = []struct {
	cmd     string
	before  func(t *testing.T, st *grpcurlState) // runs first, if set
	wantErr bool                                 // grpcurl must exit non-zero
	check   func(t *testing.T, out string, st *grpcurlState)
}{
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 list`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			grpcurlWantLines(t, out, "tokenbroker.v1.TokenBroker", "tokenbroker.v1.Admin",
				"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection")
		},
	},
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 list tokenbroker.v1.Admin`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			grpcurlWantLines(t, out, "tokenbroker.v1.Admin.ListConnections", "tokenbroker.v1.Admin.GetConnection",
				"tokenbroker.v1.Admin.SeedToken", "tokenbroker.v1.Admin.RefreshNow", "tokenbroker.v1.Admin.ListReplicas")
		},
	},
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 describe tokenbroker.v1.TokenBroker`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			for _, s := range []string{
				"service TokenBroker {",
				"rpc GetToken ( .tokenbroker.v1.GetTokenRequest ) returns ( .tokenbroker.v1.Token );",
				"rpc Invalidate ( .tokenbroker.v1.InvalidateRequest ) returns ( .tokenbroker.v1.InvalidateResponse );",
				"rpc CallAnalytics ( .tokenbroker.v1.CallAnalyticsRequest ) returns ( .tokenbroker.v1.CallAnalyticsResponse );",
			} {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		},
	},
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 describe tokenbroker.v1.Token`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			for _, s := range []string{"message Token {", "string access_token = 2;", "uint64 generation = 5;"} {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		},
	},
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 grpc.health.v1.Health/Check`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			var r struct{ Status string }
			grpcurlDecode(t, out, &r)
			if r.Status != "SERVING" {
				t.Errorf("status %q, want SERVING", r.Status)
			}
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"service":"tokenbroker.v1.TokenBroker"}' 127.0.0.1:7443 grpc.health.v1.Health/Check`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			var r struct{ Status string }
			grpcurlDecode(t, out, &r)
			if r.Status != "SERVING" {
				t.Errorf("status %q, want SERVING", r.Status)
			}
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"connection":"demo"}' 127.0.0.1:7443 tokenbroker.v1.TokenBroker/GetToken`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			tok := grpcurlToken(t, out)
			// The demo was seeded once and its tokens live an hour: the
			// Invalidate line below reports generation 1.
			if tok.Generation != 1 {
				t.Errorf("generation %d, want 1", tok.Generation)
			}
			st.generation = tok.Generation
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"connection":"demo","minValidity":"30s"}' 127.0.0.1:7443 tokenbroker.v1.TokenBroker/GetToken`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			if tok := grpcurlToken(t, out); tok.Generation != st.generation {
				t.Errorf("generation %d, want %d (the token is good for an hour)", tok.Generation, st.generation)
			}
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"connection":"demo","generation":1,"reason":"401 from my service"}' 127.0.0.1:7443 tokenbroker.v1.TokenBroker/Invalidate`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			var r struct{ Token json.RawMessage }
			grpcurlDecode(t, out, &r)
			tok := grpcurlToken(t, string(r.Token))
			if tok.Generation != st.generation+1 {
				t.Errorf("generation %d, want %d", tok.Generation, st.generation+1)
			}
			st.generation = tok.Generation
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"connection":"demo","path":"/api/fakecompany/reportsuites/collections/suites"}' 127.0.0.1:7443 tokenbroker.v1.TokenBroker/CallAnalytics`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			grpcurlCheckCall(t, out, 1, st.generation)
		},
	},
	{
		// Adobe revokes the token: the broker gets a 401, renews, retries.
		cmd: `grpcurl -plaintext -d '{"connection":"demo","path":"/api/fakecompany/reportsuites/collections/suites"}' 127.0.0.1:7443 tokenbroker.v1.TokenBroker/CallAnalytics`,
		before: func(t *testing.T, st *grpcurlState) {
			resp, err := http.Post(st.fakeURL+"/_fake/revoke?what=access", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("revoke: %s", resp.Status)
			}
		},
		check: func(t *testing.T, out string, st *grpcurlState) {
			st.generation++
			grpcurlCheckCall(t, out, 2, st.generation)
		},
	},
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 tokenbroker.v1.Admin/ListConnections`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			var r struct{ Connections []json.RawMessage }
			grpcurlDecode(t, out, &r)
			if len(r.Connections) != 1 {
				t.Fatalf("%d connections, want 1:\n%s", len(r.Connections), out)
			}
			grpcurlCheckConnection(t, string(r.Connections[0]), st.generation)
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"connection":"demo"}' 127.0.0.1:7443 tokenbroker.v1.Admin/GetConnection`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			grpcurlCheckConnection(t, out, st.generation)
		},
	},
	{
		cmd: `grpcurl -plaintext 127.0.0.1:7443 tokenbroker.v1.Admin/ListReplicas`,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			var r struct {
				Replicas []struct {
					ID      string
					Address string
					Leader  bool
				}
				Leader string
			}
			grpcurlDecode(t, out, &r)
			if len(r.Replicas) != 1 || !r.Replicas[0].Leader || r.Leader != r.Replicas[0].ID || r.Leader == "" {
				t.Errorf("want one replica that leads:\n%s", out)
			}
		},
	},
	{
		cmd: `grpcurl -plaintext -d '{"connection":"demo"}' 127.0.0.1:7443 tokenbroker.v1.Admin/RefreshNow`,
		check: func(t *testing.T, out string, st *grpcurlState) {
			var r struct{ Connection json.RawMessage }
			grpcurlDecode(t, out, &r)
			st.generation++
			grpcurlCheckConnection(t, string(r.Connection), st.generation)
		},
	},
	{
		cmd: `grpcurl -plaintext -d @ 127.0.0.1:7443 tokenbroker.v1.Admin/SeedToken < seed.json`,
		before: func(t *testing.T, st *grpcurlState) {
			// What the docs do with curl and jq.
			resp, err := http.Post(st.fakeURL+"/_fake/login", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var login struct {
				RefreshToken string `json:"refresh_token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&login); err != nil || login.RefreshToken == "" {
				t.Fatalf("fake login: %s, %v", resp.Status, err)
			}
			seed, _ := json.Marshal(map[string]string{"connection": "demo", "refreshToken": login.RefreshToken})
			if err := os.WriteFile(filepath.Join(st.dir, "seed.json"), seed, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, out string, st *grpcurlState) {
			var r struct{ Connection json.RawMessage }
			grpcurlDecode(t, out, &r)
			st.generation++
			grpcurlCheckConnection(t, string(r.Connection), st.generation)
		},
	},
	{
		cmd:     `grpcurl -plaintext -d '{"connection":"nope"}' 127.0.0.1:7443 tokenbroker.v1.TokenBroker/GetToken`,
		wantErr: true,
		check: func(t *testing.T, out string, _ *grpcurlState) {
			for _, s := range []string{"Code: NotFound", `"reason": "ERROR_REASON_CONNECTION_NOT_FOUND"`, `"domain": "tokenbroker.v1"`} {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		},
	},
}

// TestGrpcurl runs the grpcurl command lines of docs/grpcurl.md against an
// in-process demo and checks what they print.
func TestGrpcurl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds grpcurl and runs the demo (embedded etcd)")
	}
	root := grpcurlModuleRoot(t)
	docs := grpcurlReadDocs(t, root)
	dir := t.TempDir()
	bin := grpcurlBuild(t, root, dir)
	addr, fakeURL := grpcurlStartDemo(t)

	st := &grpcurlState{fakeURL: fakeURL, dir: dir}
	for i, c := range grpcurlCommands {
		name := fmt.Sprintf("%02d %s", i, grpcurlCaseName(c.cmd, c.wantErr))
		ok := t.Run(name, func(t *testing.T) {
			args, stdin := grpcurlSplit(t, c.cmd)
			if c.before != nil {
				c.before(t, st)
			}
			out, err := grpcurlRun(t, bin, dir, stdin, nil, grpcurlAddr(args, addr))
			if c.wantErr {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() == 0 {
					t.Fatalf("want a non-zero exit code, got %v:\n%s", err, out)
				}
			} else if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			c.check(t, out, st)
		})
		if !ok {
			break // the next lines build on this one
		}
	}

	t.Run("api key header", func(t *testing.T) {
		// The deployed-broker lines pass the key with -expand-headers from the
		// environment; check that grpcurl sends what they say (the demo
		// ignores the header).
		if !strings.Contains(docs, grpcurlAPIKeyFlags) {
			t.Fatalf("docs/grpcurl.md lacks %s", grpcurlAPIKeyFlags)
		}
		args, _ := grpcurlSplit(t, "grpcurl -v -plaintext "+grpcurlAPIKeyFlags+" 127.0.0.1:7443 tokenbroker.v1.Admin/ListReplicas")
		out, err := grpcurlRun(t, bin, dir, "", []string{"TOKENBROKER_API_KEY=test-api-key"}, grpcurlAddr(args, addr))
		if err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if !strings.Contains(out, "authorization: Bearer test-api-key") {
			t.Errorf("the key was not sent:\n%s", out)
		}
	})
}

// TestGrpcurlDocs checks that docs/grpcurl.md and the README's "Operating with
// grpcurl" section (once it has one) list exactly the command lines that
// TestGrpcurl runs against the demo.
func TestGrpcurlDocs(t *testing.T) {
	root := grpcurlModuleRoot(t)
	docs := grpcurlReadDocs(t, root)
	grpcurlCheckDoc(t, "docs/grpcurl.md", docs)
	if readme, err := os.ReadFile(filepath.Join(root, "README.md")); err == nil {
		if section := grpcurlSection(string(readme), "Operating with grpcurl"); section != "" {
			grpcurlCheckDoc(t, "README.md", section)
		}
	}
	for _, line := range grpcurlDocLines(docs) {
		grpcurlSplit(t, line) // every documented line parses
	}
}

// grpcurlDocLines returns the grpcurl command lines of the code blocks of doc.
func grpcurlDocLines(doc string) []string {
	var lines []string
	fenced := false
	for _, l := range strings.Split(doc, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "```"):
			fenced = !fenced
		case fenced && strings.HasPrefix(l, "grpcurl "):
			lines = append(lines, l)
		}
	}
	return lines
}

// grpcurlSection returns the Markdown section whose heading contains title,
// up to the next heading of the same or a higher level, or "".
func grpcurlSection(doc, title string) string {
	var out []string
	level, fenced := 0, false
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if h := len(l) - len(strings.TrimLeft(l, "#")); !fenced && h > 0 && strings.HasPrefix(l[h:], " ") {
			switch {
			case level == 0 && strings.Contains(l, title):
				level = h
			case level > 0 && h <= level:
				return strings.Join(out, "\n")
			}
		}
		if level > 0 {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func grpcurlCheckDoc(t *testing.T, name, doc string) {
	t.Helper()
	lines := map[string]bool{}
	for _, l := range grpcurlDocLines(doc) {
		lines[l] = true
	}
	tested := map[string]bool{}
	for _, c := range grpcurlCommands {
		tested[c.cmd] = true
		if !lines[c.cmd] {
			t.Errorf("%s lacks the line\n\t%s", name, c.cmd)
		}
	}
	for l := range lines {
		if strings.Contains(l, grpcurlDocAddr) && !tested[l] {
			t.Errorf("%s has a demo line that no test runs:\n\t%s", name, l)
		}
	}
}

func grpcurlModuleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not in a module")
	}
	return filepath.Dir(gomod)
}

func grpcurlReadDocs(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "grpcurl.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grpcurlBuild builds the grpcurl of the tools module into dir.
func grpcurlBuild(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "grpcurl")
	cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", bin, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building grpcurl: %v\n%s", err, out)
	}
	return bin
}

// grpcurlStartDemo runs the demo in this process on free ports and returns
// once its connection "demo" is seeded. Cleanup stops it.
func grpcurlStartDemo(t *testing.T) (addr, fakeURL string) {
	t.Helper()
	addr, fakeAddr := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Hour-long tokens: no scheduled refresh moves the generations that
		// the checks follow.
		done <- runDemo(ctx, []string{"--listen", addr, "--fake-listen", fakeAddr, "--metrics-listen", "",
			"--token-lifetime", "1h", "--log-level", "warn"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the demo did not stop within 30s of its context's end")
		}
	})

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health, admin := healthpb.NewHealthClient(conn), pb.NewAdminClient(conn)

	// Serving first (the cache is loaded), then seeded (demo has a token).
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		h, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		if err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			var c *pb.Connection
			c, err = admin.GetConnection(cctx, &pb.GetConnectionRequest{Connection: "demo"})
			if err == nil && c.GetState() == pb.ConnectionState_CONNECTION_STATE_OK && c.GetGeneration() >= 1 {
				ccancel()
				return addr, c.GetApiBaseUrl()
			}
			last = fmt.Sprintf("connection demo: %v %v", c.GetState(), err)
		} else {
			last = fmt.Sprintf("health: %v %v", h.GetStatus(), err)
		}
		ccancel()
		if time.Now().After(deadline) {
			t.Fatalf("demo not ready at %s after 2m; last: %s", addr, last)
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("demo stopped before it was ready: %v", err)
		case <-tick.C:
		}
	}
}

// grpcurlRun runs grpcurl in dir with stdin from the file of that name (if
// any) and returns its stdout and stderr together.
func grpcurlRun(t *testing.T, bin, dir, stdin string, env, args []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if stdin != "" {
		f, err := os.Open(filepath.Join(dir, stdin))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return grpcurlRedact(out.String()), err
}

var grpcurlAccessToken = regexp.MustCompile(`("accessToken":\s*")[^"]*"`)

// grpcurlRedact hides access tokens, so that failures never print one.
func grpcurlRedact(s string) string {
	return grpcurlAccessToken.ReplaceAllString(s, `${1}<redacted>"`)
}

// grpcurlSplit splits a command line of the docs as sh would: words, 'single'
// and "double" quotes, and a final "< file". It drops the leading "grpcurl".
func grpcurlSplit(t *testing.T, line string) (args []string, stdin string) {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				t.Fatalf("unterminated quote in %s", line)
			}
			quoted := line[i+1 : i+1+j]
			if c == '"' && strings.ContainsAny(quoted, "$`\\") {
				t.Fatalf("no expansion in double quotes, please: %s", line)
			}
			cur.WriteString(quoted)
			inWord = true
			i += j + 1
		case strings.IndexByte("$`\\|&;()<>*?#", c) >= 0 && !(c == '<' && !inWord):
			t.Fatalf("%q is not supported in %s", c, line)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if n := len(words); n >= 2 && words[n-2] == "<" {
		stdin, words = words[n-1], words[:n-2]
	}
	for _, w := range words {
		if w == "<" {
			t.Fatalf("misplaced < in %s", line)
		}
	}
	if len(words) == 0 || words[0] != "grpcurl" {
		t.Fatalf("not a grpcurl command: %s", line)
	}
	return words[1:], stdin
}

// grpcurlAddr puts the test demo's address in place of the docs' one.
func grpcurlAddr(args []string, addr string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == grpcurlDocAddr {
			a = addr
		}
		out[i] = a
	}
	return out
}

// grpcurlCaseName names a subtest after the verb or method of a command line.
func grpcurlCaseName(cmd string, wantErr bool) string {
	f := strings.Fields(cmd)
	name := cmd
	for i, w := range f {
		if w == grpcurlDocAddr && i+1 < len(f) {
			name = f[i+1]
			if i+2 < len(f) && f[i+2] != "<" {
				name += " " + f[i+2]
			}
			break
		}
	}
	if wantErr {
		name += " error"
	}
	return name
}

func grpcurlWantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("output lacks the line %q:\n%s", w, out)
		}
	}
}

func grpcurlDecode(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("output is not the JSON of one message: %v\n%s", err, out)
	}
}

type grpcurlTokenJSON struct {
	Connection  string
	AccessToken string
	TokenType   string
	ExpiresAt   time.Time
	Generation  uint64 `json:",string"`
	APIKey      string `json:"apiKey"`
}

func grpcurlToken(t *testing.T, out string) grpcurlTokenJSON {
	t.Helper()
	var tok grpcurlTokenJSON
	grpcurlDecode(t, out, &tok)
	if tok.Connection != "demo" || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresAt.IsZero() || tok.APIKey == "" {
		t.Errorf("incomplete token:\n%s", grpcurlRedact(out))
	}
	return tok
}

func grpcurlCheckCall(t *testing.T, out string, attempts int, generation uint64) {
	t.Helper()
	var r struct {
		StatusCode int
		Body       string
		Generation uint64 `json:",string"`
		Attempts   int
	}
	grpcurlDecode(t, out, &r)
	if r.StatusCode != http.StatusOK || r.Attempts != attempts || r.Generation != generation {
		t.Errorf("statusCode %d, attempts %d, generation %d; want 200, %d, %d:\n%s",
			r.StatusCode, r.Attempts, r.Generation, attempts, generation, out)
	}
	body, err := base64.StdEncoding.DecodeString(r.Body)
	if err != nil {
		t.Fatalf("body is not base64: %v", err)
	}
	var suites struct{ Content []json.RawMessage }
	if err := json.Unmarshal(body, &suites); err != nil || len(suites.Content) == 0 {
		t.Errorf("body is not a list of report suites (%v):\n%s", err, body)
	}
}

func grpcurlCheckConnection(t *testing.T, out string, generation uint64) {
	t.Helper()
	var c struct {
		Name             string
		State            string
		Generation       uint64 `json:",string"`
		Leader           string
		TokenFingerprint string
	}
	grpcurlDecode(t, out, &c)
	if c.Name != "demo" || c.State != "CONNECTION_STATE_OK" || c.Generation != generation || c.Leader == "" || c.TokenFingerprint == "" {
		t.Errorf("want demo, CONNECTION_STATE_OK, generation %d, a leader and a fingerprint:\n%s", generation, out)
	}
	if strings.Contains(out, "accessToken") {
		t.Errorf("a connection carries a token:\n%s", grpcurlRedact(out))
	}
}
