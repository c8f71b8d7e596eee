package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDemo runs the demo in-process and waits until it answers; it returns
// the gRPC address and the fake Adobe's URL.
func startDemo(t *testing.T, args ...string) (string, string) {
	t.Helper()
	addr, fakeAddr := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args = append([]string{"--listen", addr, "--fake-listen", fakeAddr, "--metrics-listen", "", "--log-level", "error"}, args...)
	go func() { done <- runDemo(ctx, args) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := clients.Dial(addr, clients.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tok, err := c.GetToken(ctx, "demo", 0)
		cancel()
		if err == nil && tok.Generation >= 1 {
			return addr, "http://" + fakeAddr
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fakeStats(t *testing.T, fakeURL string) map[string]map[string]int {
	t.Helper()
	resp, err := http.Get(fakeURL + "/_fake/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		TokenCalls map[string]int `json:"token_calls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return map[string]map[string]int{"token_calls": s.TokenCalls}
}

// TestLogin drives the whole authorization-code flow with PKCE against the
// fake Adobe, which approves at once: the "browser" follows the redirect to
// the local listener, and the code is exchanged through Admin.SeedToken.
func TestLogin(t *testing.T) {
	addr, fakeURL := startDemo(t)
	before := fakeStats(t, fakeURL)["token_calls"]["authorization_code"]

	old := openBrowser
	t.Cleanup(func() { openBrowser = old })
	openBrowser = func(u string) error {
		if !strings.Contains(u, "code_challenge_method=S256") || !strings.Contains(u, "code_challenge=") {
			t.Errorf("authorize URL lacks PKCE S256: %s", u)
		}
		go func() {
			resp, err := http.Get(u) // follows the 302 to the local callback
			if err == nil {
				resp.Body.Close()
			}
		}()
		return nil
	}
	redirect := "http://" + freePort(t) + "/callback"
	err := runLogin(context.Background(), []string{
		"--connection", "demo", "--addr", addr,
		"--auth-url", fakeURL + "/ims/authorize/v2", "--client-id", "fake-client-id",
		"--scopes", "openid,AdobeID,offline_access", "--redirect-uri", redirect, "--timeout", "60s",
	})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if got := fakeStats(t, fakeURL)["token_calls"]["authorization_code"]; got != before+1 {
		t.Fatalf("authorization_code exchanges: %d, want %d", got, before+1)
	}
	c, err := clients.Dial(addr, clients.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := c.Admin().GetConnection(context.Background(), &pb.GetConnectionRequest{Connection: "demo"})
	if err != nil || conn.GetState() != pb.ConnectionState_CONNECTION_STATE_OK || conn.GetLoginTime() == nil {
		t.Fatalf("after login: %v %v", conn, err)
	}
	tok, err := c.GetToken(context.Background(), "demo", 0)
	if err != nil || tok.Generation != conn.GetGeneration() {
		t.Fatalf("serving after login: %v %v", tok, err)
	}
}

// TestLoginPasted: with a redirect URI that is not served here, the user
// pastes the URL they were redirected to; a wrong state is refused.
func TestLoginPastedWrongState(t *testing.T) {
	old := loginInput
	t.Cleanup(func() { loginInput = old })
	loginInput = strings.NewReader("https://app.example.com/cb?code=abc&state=forged\n")
	oldOpen := openBrowser
	t.Cleanup(func() { openBrowser = oldOpen })
	openBrowser = func(string) error { return nil }
	err := runLogin(context.Background(), []string{
		"--connection", "demo", "--auth-url", "https://ims.example.com/ims/authorize/v2", "--client-id", "x",
		"--redirect-uri", "https://app.example.com/cb", "--timeout", "10s",
	})
	if err == nil || !strings.Contains(err.Error(), "state does not match") {
		t.Fatalf("pasted URL with a forged state: %v", err)
	}
}
