package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/server"
)

// TestAdobeGuide runs the README's guide "Connect to real Adobe Analytics"
// against the fake Adobe: the guide's config file (URLs, client id, API key
// hash and paths swapped for the fake's), config check, serve, login with a
// pasted redirect URL, /discovery/me, and a first report.
func TestAdobeGuide(t *testing.T) {
	fake := fakeadobe.New(fakeadobe.Options{})
	fsrv := httptest.NewServer(fake)
	defer fsrv.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "adobe-client-secret"), []byte(fake.ClientSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apiKey := "tbk_guide-test-key"
	addr, maddr := freePort(t), freePort(t)
	raw, err := os.ReadFile("../../examples/adobe-analytics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"127.0.0.1:7443", addr, "127.0.0.1:9090", maddr,
		"./tokenbroker-data", filepath.Join(dir, "data"),
		"./adobe-client-secret", filepath.Join(dir, "adobe-client-secret"),
		"YOUR_CLIENT_ID", fake.ClientID(),
		"0000000000000000000000000000000000000000000000000000000000000000", server.HashAPIKey(apiKey),
		"https://analytics.adobe.io", fsrv.URL,
		"provider: adobe ", "ims_url: "+fsrv.URL+"\n    provider: adobe ",
	).Replace(string(raw))
	cfgPath := filepath.Join(dir, "tokenbroker.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "ops.key")
	if err := os.WriteFile(keyFile, []byte(apiKey), 0o600); err != nil {
		t.Fatal(err)
	}

	// tokenbroker config check tokenbroker.yaml
	if err := runConfig(context.Background(), []string{"check", cfgPath}); err != nil {
		t.Fatalf("config check: %v", err)
	}
	// tokenbroker serve --config tokenbroker.yaml
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- runServe(ctx, []string{"--config", cfgPath}) }()
	t.Cleanup(func() { cancel(); <-served })
	c, err := clients.Dial(addr, clients.WithInsecure(), clients.WithAPIKey(apiKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "serve answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Admin().GetConnection(ctx, &pb.GetConnectionRequest{Connection: "adobe-prod"})
		return err == nil
	})

	// tokenbroker login --connection adobe-prod --config tokenbroker.yaml --api-key-file ops.key
	//   --redirect-uri https://localhost:8765/callback, then paste the URL the browser was sent to.
	pr, pw := io.Pipe()
	oldIn, oldOpen := loginInput, openBrowser
	t.Cleanup(func() { loginInput, openBrowser = oldIn, oldOpen })
	loginInput = pr
	openBrowser = func(u string) error {
		go func() {
			// The "user" logs in; the fake approves at once and redirects.
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get(u)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			resp.Body.Close()
			io.WriteString(pw, resp.Header.Get("Location")+"\n")
		}()
		return nil
	}
	if err := runLogin(context.Background(), []string{"--connection", "adobe-prod", "--config", cfgPath,
		"--addr", addr, "--api-key-file", keyFile, "--redirect-uri", "https://localhost:8765/callback", "--timeout", "60s"}); err != nil {
		t.Fatalf("login: %v", err)
	}
	// tokenbroker status
	if err := runStatus(context.Background(), []string{"--addr", addr, "--api-key-file", keyFile}); err != nil {
		t.Fatalf("status: %v", err)
	}

	// CallAnalytics GET /discovery/me: the global company id.
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	me, err := c.TokenBroker().CallAnalytics(rctx, &pb.CallAnalyticsRequest{Connection: "adobe-prod", Path: "/discovery/me"})
	if err != nil || me.GetStatusCode() != 200 {
		t.Fatalf("discovery/me: %v %v", me, err)
	}
	var disc struct {
		IMSOrgs []struct {
			Companies []struct {
				GlobalCompanyID string `json:"globalCompanyId"`
			} `json:"companies"`
		} `json:"imsOrgs"`
	}
	if err := json.Unmarshal(me.GetBody(), &disc); err != nil || len(disc.IMSOrgs) == 0 || len(disc.IMSOrgs[0].Companies) == 0 {
		t.Fatalf("discovery/me body: %v", err)
	}
	company := disc.IMSOrgs[0].Companies[0].GlobalCompanyID

	// The first report.
	report, err := c.TokenBroker().CallAnalytics(rctx, &pb.CallAnalyticsRequest{
		Connection: "adobe-prod", Method: "POST", Path: "/api/" + company + "/reports",
		Body: []byte(`{"rsid":"fakersid1","globalFilters":[{"type":"dateRange","dateRange":"2026-11-01T00:00:00.000/2026-11-29T00:00:00.000"}],"metricContainer":{"metrics":[{"id":"metrics/pageviews"}]},"dimension":"variables/daterangeday"}`),
	})
	if err != nil || report.GetStatusCode() != 200 || !strings.Contains(string(report.GetBody()), "rows") {
		t.Fatalf("report: %v %v", report, err)
	}
}
