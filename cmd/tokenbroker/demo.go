package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/embedetcd"
	"github.com/tokenbroker/tokenbroker/server"
)

// runDemo starts embedded etcd, the fake Adobe and one or more broker
// replicas on loopback, seeds the connection "demo" as a login would, and
// prints how to poke it. It needs no credentials.
func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:7443", "gRPC address of the first replica (the next replicas take the following ports)")
	fakeListen := fs.String("fake-listen", "127.0.0.1:8181", "address of the fake Adobe (IMS and Analytics API)")
	metricsListen := fs.String("metrics-listen", "127.0.0.1:9090", "HTTP address for /metrics, /healthz and /readyz of the first replica (\"\" disables)")
	replicas := fs.Int("replicas", 1, "number of broker replicas sharing the embedded etcd")
	lifetime := fs.Duration("token-lifetime", time.Minute, "lifetime of the fake's access tokens (a refresh is due after about 3/4 of it)")
	dataDir := fs.String("data-dir", "", "embedded etcd data directory (default: a temporary directory, removed at exit)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replicas < 1 || *replicas > 9 {
		return errors.New("--replicas must be 1 to 9")
	}
	log := newLogger("text", *logLevel)

	dir := *dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "tokenbroker-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ectx, cancel := context.WithTimeout(ctx, time.Minute)
	etcd, err := embedetcd.Start(ectx, embedetcd.Options{Dir: dir})
	cancel()
	if err != nil {
		return err
	}
	defer etcd.Close()

	fake := fakeadobe.New(fakeadobe.Options{TokenLifetime: *lifetime})
	flis, err := net.Listen("tcp", *fakeListen)
	if err != nil {
		log.Warn("fake Adobe address busy; taking a free port", "addr", *fakeListen, "err", err)
		if flis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
	}
	fakeURL := "http://" + flis.Addr().String()
	fakeSrv := &http.Server{Handler: fake, ReadHeaderTimeout: 5 * time.Second}
	go fakeSrv.Serve(flis)
	defer fakeSrv.Close()

	conn := broker.ConnectionConfig{
		Name: "demo", Provider: broker.ProviderAdobe, Grant: broker.GrantRefreshToken,
		IMSURL: fakeURL, APIBaseURL: fakeURL, ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(),
		Scopes:          []string{"openid", "AdobeID", "offline_access", "additional_info.projectedProductContext"},
		GlobalCompanyID: fake.CompanyID(),
	}
	cfg := broker.Config{
		Connections: []broker.ConnectionConfig{conn},
		Timing: broker.Timing{
			ExpiryMargin: 5 * time.Second, MinDemandInterval: 2 * time.Second,
			TokenCallTimeout: 5 * time.Second, ClaimTTL: 10 * time.Second, Wait: 20 * time.Second,
		},
	}
	keys := seal.Generate("demo")
	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}

	var wg sync.WaitGroup
	errc := make(chan error, *replicas)
	ready := make(chan *broker.Broker, *replicas)
	var addrs []string
	for i := range *replicas {
		cli, err := etcd.NewClient()
		if err != nil {
			return err
		}
		defer cli.Close()
		addr := *listen
		if i > 0 {
			addr = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
		addrs = append(addrs, addr)
		mAddr := ""
		if i == 0 {
			mAddr = *metricsListen
		}
		o := replicaOptions{
			Config: cfg, Client: cli, Prefix: "/tokenbroker/", Keyring: keys,
			ReplicaID: fmt.Sprintf("replica-%d", i+1), Listen: addr, MetricsListen: mAddr,
			Policy: server.Policy{Disabled: true}, Logger: log,
			ShutdownGrace: 3 * time.Second,
			OnReady:       func(b *broker.Broker, _, _ string) { ready <- b },
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runReplica(ctx, o); err != nil {
				errc <- err
			}
		}()
	}
	var first *broker.Broker
	for i := range *replicas {
		select {
		case b := <-ready:
			if i == 0 {
				first = b
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			wg.Wait()
			return nil
		}
	}
	// What `tokenbroker login` does against the real Adobe: the fake approves at once.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = first.Seed(sctx, "demo", broker.Seed{RefreshToken: fake.IssueRefreshToken()})
	cancel()
	if err != nil {
		return fmt.Errorf("seeding the demo connection: %w", err)
	}
	printDemo(os.Stdout, addrs, fakeURL, *metricsListen, fake.CompanyID(), *lifetime)
	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Error("replica failed", "err", err)
	}
	wg.Wait()
	return nil
}

func printDemo(w *os.File, addrs []string, fakeURL, metricsAddr, company string, lifetime time.Duration) {
	a := addrs[0]
	fmt.Fprintf(w, `
tokenbroker demo is serving.
  gRPC (plaintext, loopback only): %s
  fake Adobe (IMS + Analytics):    %s   (stats: %s/_fake/stats)
`, joinAddrs(addrs), fakeURL, fakeURL)
	if metricsAddr != "" {
		fmt.Fprintf(w, "  metrics and health:              http://%s/metrics  /healthz  /readyz\n", metricsAddr)
	}
	fmt.Fprintf(w, `  connection "demo": seeded; access tokens live %v, so the leader refreshes about every %v.

Try (grpcurl: go tool -modfile=tools/go.mod grpcurl, or any grpcurl):
  grpcurl -plaintext %[3]s list
  grpcurl -plaintext -d '{"connection":"demo"}' %[3]s tokenbroker.v1.TokenBroker/GetToken
  grpcurl -plaintext -d '{"connection":"demo","generation":1,"reason":"401 from my service"}' %[3]s tokenbroker.v1.TokenBroker/Invalidate
  curl -s %[4]s/_fake/stats
  grpcurl -plaintext -d '{"connection":"demo","path":"/api/%[5]s/reportsuites/collections/suites"}' %[3]s tokenbroker.v1.TokenBroker/CallAnalytics
  curl -s -X POST '%[4]s/_fake/revoke?what=access'     # Adobe revokes the token: the next CallAnalytics answers attempts=2
  grpcurl -plaintext %[3]s tokenbroker.v1.Admin/ListConnections
  grpcurl -plaintext %[3]s tokenbroker.v1.Admin/ListReplicas
  go run ./cmd/tokenbroker status --addr %[3]s
`, lifetime, time.Duration(float64(lifetime)*0.7).Round(time.Second), a, fakeURL, company)
	if len(addrs) > 1 {
		fmt.Fprintf(w, "\n401 storm over all replicas (one refresh, however many reports):\n  go run ./cmd/tokenbroker storm --addrs %s --callers 300\n", joinAddrs(addrs))
	}
	fmt.Fprintln(w, "\nCtrl-C stops the demo.")
}

func joinAddrs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

func newLogger(format, level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
