package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeadobe"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
)

// directClient is configured like the broker's own upstream client
// (broker/apiproxy), so both sides reuse connections alike.
func directClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: 16,
			ForceAttemptHTTP2:   true,
		},
		Timeout: 60 * time.Second,
	}
}

func scenCall(ctx context.Context, r *runner, s *section) error {
	c, err := newCluster(ctx, clusterOptions{Debug: r.debug})
	if err != nil {
		return err
	}
	defer c.close()
	rep, err := c.startReplica(ctx, "replica-1", 0, nil)
	if err != nil {
		return err
	}
	if err := c.seed(ctx, rep); err != nil {
		return err
	}
	tok, err := rep.B.GetToken(ctx, connName, 0)
	if err != nil {
		return err
	}
	conns, err := dialPool(rep.Addr, poolSize, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80<<20)))
	if err != nil {
		return err
	}
	defer closeConns(conns)
	stubs := make([]pb.TokenBrokerClient, len(conns))
	for i, cc := range conns {
		stubs[i] = pb.NewTokenBrokerClient(cc)
	}
	hc := directClient()
	path := "/api/" + fakeadobe.DefaultCompanyID + "/reportsuites/collections/suites"
	viaBroker := func(ctx context.Context, w int) error {
		resp, err := stubs[w%len(stubs)].CallAnalytics(ctx, &pb.CallAnalyticsRequest{Connection: connName, Path: path})
		if err != nil {
			return err
		}
		if resp.GetStatusCode() != http.StatusOK {
			return fmt.Errorf("upstream status %d", resp.GetStatusCode())
		}
		return nil
	}
	direct := func(ctx context.Context, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.fakeURL+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("x-api-key", tok.APIKey)
		req.Header.Set("x-proxy-global-company-id", fakeadobe.DefaultCompanyID)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	vs := []variant{{"direct to the fake API", direct}, {"through the broker", viaBroker}}
	for _, v := range vs {
		if err := v.fn(ctx, 0); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	s.para("The same request, `GET %s` (the report-suite list, %s of JSON), sent **directly** to the fake Analytics API with the headers the broker would set (`Authorization`, `x-api-key`, `x-proxy-global-company-id`, over an HTTP client configured like the broker's), and **through the broker** with `CallAnalytics` over gRPC. The fake answers in microseconds on loopback, so the first rows compare the broker's whole overhead with an almost free upstream; the rows with a simulated upstream latency (the fake's API answers after a sleep) show the same overhead beside a more realistic API. Interleaved rounds of %v, %d rounds per variant.", path, fmtBytes(float64(responseSize(ctx, hc, c.fakeURL+path, tok.AccessToken, tok.APIKey))), r.sz.callRound, r.sz.callRounds)
	t := s.table("", "upstream latency", "callers", "path", "calls/s", "p50", "p99", "p50 × direct", "added p50", "errors")
	type res struct {
		delay time.Duration
		conc  int
		ratio float64
		added time.Duration
	}
	var results []res
	for _, delay := range r.sz.callDelays {
		c.apiDelay.Store(int64(delay))
		for _, conc := range []int{1, 16} {
			aggs := interleave(ctx, vs, conc, r.sz.callRounds, r.sz.callRound)
			if err := ctx.Err(); err != nil {
				return err
			}
			d, b := aggs[0], aggs[1]
			ratio := float64(b.pct(0.5)) / float64(d.pct(0.5))
			added := b.pct(0.5) - d.pct(0.5)
			for i, a := range aggs {
				rel, add := "1.00", ""
				if i == 1 {
					rel, add = fmt.Sprintf("%.2f", ratio), fmtDur(added)
				}
				t.row(fmtDelay(delay), fmt.Sprint(conc), vs[i].name, fmtRate(a.rate()), fmtDur(a.pct(0.5)), fmtDur(a.pct(0.99)), rel, add, errCell(a.errs, a.lastErr))
			}
			results = append(results, res{delay, conc, ratio, added})
			r.logf("upstream +%v, c=%d: direct p50 %s, broker p50 %s (%.2f×)", delay, conc, fmtDur(d.pct(0.5)), fmtDur(b.pct(0.5)), ratio)
		}
	}
	c.apiDelay.Store(0)
	s.note("What the broker adds is a gRPC round trip (client → replica, through the server chain) plus the proxy's own work (token from the cache, request checks, copying the answer into the gRPC response). Against an upstream that answers in about 100 µs on loopback that is a multiple of the direct latency; against an API that takes tens of milliseconds it is a few percent. At 16 callers the cores are saturated, so the latency ratio approaches the ratio of CPU spent per call on each path.")
	for _, x := range results {
		if x.delay != 0 {
			continue
		}
		r.target("5 CallAnalytics", fmt.Sprintf("latency through the broker ≤ 1.25 × direct, %d caller(s), upstream as is", x.conc), fmt.Sprintf("%.2f × (p50, +%s)", x.ratio, fmtDur(x.added)), x.ratio <= 1.25)
	}
	for _, x := range results {
		if x.delay == 0 {
			continue
		}
		r.aside("5 CallAnalytics", fmt.Sprintf("latency through the broker ≤ 1.25 × direct, %d caller(s), upstream +%v", x.conc, x.delay), fmt.Sprintf("%.2f × (p50, +%s)", x.ratio, fmtDur(x.added)), x.ratio <= 1.25)
	}
	return callMemory(ctx, r, s, c)
}

func fmtDelay(d time.Duration) string {
	if d == 0 {
		return "as is (loopback)"
	}
	return "+" + d.String()
}

// responseSize is the size of the body the benchmark fetches.
func responseSize(ctx context.Context, hc *http.Client, url, tok, key string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("x-api-key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return len(b)
}

// callMemory proxies a large body through a replica running in a child
// process and reads that process's peak memory during the call.
func callMemory(ctx context.Context, r *runner, s *section, c *cluster) error {
	env := map[string]string{etcdEnv: c.etcd.Endpoint, fakeEnv: c.fakeURL, keyringEnv: c.keyFile}
	p, err := spawn(roleMem, "mem-1", env, r.debug)
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	addr, err := p.expect(ctx, "ready", 30*time.Second)
	if err != nil {
		return err
	}
	conns, err := dialPool(addr, 1, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80<<20)))
	if err != nil {
		return err
	}
	defer closeConns(conns)
	stub := pb.NewTokenBrokerClient(conns[0])
	n := r.sz.bigBody
	call := func(size int) error {
		resp, err := stub.CallAnalytics(ctx, &pb.CallAnalyticsRequest{
			Connection: connName, Path: "/api/" + fakeadobe.DefaultCompanyID + "/_fake/bytes", Query: map[string]string{"n": strconv.Itoa(size)},
		})
		if err != nil {
			return err
		}
		if resp.GetStatusCode() != http.StatusOK || len(resp.GetBody()) != size {
			return fmt.Errorf("status %d, %d bytes, want 200 and %d", resp.GetStatusCode(), len(resp.GetBody()), size)
		}
		return nil
	}
	if err := call(1 << 10); err != nil { // warm up
		return err
	}
	t := s.table(fmt.Sprintf("Memory of a replica (its own process) while it proxies one %s response. Baseline after a forced GC; the process samples itself every millisecond during the call.", fmtBytes(float64(n))),
		"run", "body", "peak heap − baseline", "× body", "peak RSS − baseline", "allocated during the call")
	var worst float64
	for i := range r.sz.memRuns {
		if _, err := fmt.Fprintln(p.stdin, "start"); err != nil {
			return err
		}
		if _, err := p.expect(ctx, "started", 10*time.Second); err != nil {
			return err
		}
		if err := call(n); err != nil {
			return err
		}
		if _, err := fmt.Fprintln(p.stdin, "stop"); err != nil {
			return err
		}
		line, err := p.expect(ctx, "peak", 10*time.Second)
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return fmt.Errorf("bad memory report %q", line)
		}
		heap, _ := strconv.ParseFloat(f[0], 64)
		rssd, _ := strconv.ParseFloat(f[1], 64)
		allocs, _ := strconv.ParseFloat(f[2], 64)
		x := heap / float64(n)
		worst = max(worst, x)
		t.row(fmt.Sprint(i+1), fmtBytes(float64(n)), fmtBytes(heap), fmt.Sprintf("%.2f", x), fmtBytes(rssd), fmtBytes(allocs))
		r.logf("proxying %s: peak heap +%s (%.2f× body), RSS +%s", fmtBytes(float64(n)), fmtBytes(heap), x, fmtBytes(rssd))
	}
	s.note("The body is held whole at least twice on the way: read from upstream into one buffer, then marshalled into the gRPC response. RSS includes memory the Go runtime has not yet returned to the OS; the heap figure is what the target is about.")
	r.target("5 CallAnalytics", fmt.Sprintf("peak memory proxying a %s response < 3 × body", fmtBytes(float64(n))), fmt.Sprintf("%.2f × (worst heap peak of %d)", worst, r.sz.memRuns), worst < 3)
	return nil
}
