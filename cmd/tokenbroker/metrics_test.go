package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/clients"
)

// scrape returns the value of the first sample of a series whose line matches
// the name and labels given, e.g. `tokenbroker_token_generation{connection="demo"}`.
func scrape(t *testing.T, url, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// TestMetrics scrapes /metrics during a scenario (a token served, one 401
// reported) and finds the named series with the expected values.
func TestMetrics(t *testing.T) {
	mAddr := freePort(t)
	addr, _ := startDemo(t, "--metrics-listen", mAddr)
	metricsURL := "http://" + mAddr + "/metrics"
	c, err := clients.Dial(addr, clients.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	tok, err := c.GetToken(ctx, "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	nt, err := c.Invalidate(ctx, "demo", tok.Generation, "401 in a test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		series string
		check  func(float64) bool
		want   string
	}{
		{`tokenbroker_token_generation{connection="demo"}`, func(v float64) bool { return v >= float64(nt.Generation) }, ">= the generation returned"},
		{`tokenbroker_invalidations_total{connection="demo"}`, func(v float64) bool { return v >= 1 }, ">= 1"},
		{`tokenbroker_refreshes_total{connection="demo",result="ok"}`, func(v float64) bool { return v >= 2 }, ">= 2 (seed and refresh)"},
		{`tokenbroker_token_expiry_seconds{connection="demo"}`, func(v float64) bool { return v > 0 && v <= 60 }, "in (0, 60]"},
		{`tokenbroker_connection_state{connection="demo",state="OK"}`, func(v float64) bool { return v == 1 }, "1"},
		{`tokenbroker_leader`, func(v float64) bool { return v == 1 }, "1"},
		{`tokenbroker_refresh_token_expiry_seconds{connection="demo"}`, func(v float64) bool { return v > 13*24*3600 }, "about 14 days"},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="GetToken",grpc_service="tokenbroker.v1.TokenBroker",grpc_type="unary"}`, func(v float64) bool { return v >= 1 }, ">= 1"},
	} {
		v, ok := scrape(t, metricsURL, tc.series)
		if !ok || !tc.check(v) {
			t.Errorf("%s = %v (found %v), want %s", tc.series, v, ok, tc.want)
		}
	}
	// No token in the page.
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), nt.AccessToken) || strings.Contains(string(body), tok.AccessToken) {
		t.Fatal("/metrics shows an access token")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + mAddr + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
}
