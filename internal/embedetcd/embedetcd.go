// Package embedetcd starts a single-node etcd inside the process: the
// broker's default store when no etcd endpoints are configured, and the real
// etcd that tests run against.
package embedetcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is an embedded etcd member and a client connected to it.
type Server struct {
	Etcd   *embed.Etcd
	Client *clientv3.Client
	// Endpoint is the client URL, such as http://127.0.0.1:23790.
	Endpoint string
}

// Options configure Start.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// ClientAddr and PeerAddr are host:port on loopback; empty picks free ports.
	ClientAddr, PeerAddr string
	// Logger; nil discards etcd's own logs.
	Logger *zap.Logger
}

// Start starts the member and waits until it serves.
func Start(ctx context.Context, opts Options) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Dir = opts.Dir
	cfg.Name = "tokenbroker"
	clientAddr, peerAddr := opts.ClientAddr, opts.PeerAddr
	var err error
	if clientAddr == "" {
		if clientAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	if peerAddr == "" {
		if peerAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	cu, _ := url.Parse("http://" + clientAddr)
	pu, _ := url.Parse("http://" + peerAddr)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ListenMetricsUrls = nil
	if opts.Logger != nil {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(opts.Logger)
	} else {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	}
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd not ready: %w", ctx.Err())
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{cu.String()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Server{Etcd: e, Client: cli, Endpoint: cu.String()}, nil
}

// NewClient returns another client of the member (each replica of a test
// cluster should have its own).
func (s *Server) NewClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Close stops the client and the member.
func (s *Server) Close() {
	s.Client.Close()
	s.Etcd.Close()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// TestMain starts one member in a temporary directory for a test binary,
// stores it in *srv, runs the tests and exits: the TestMain of packages whose
// tests share one etcd (each test under its own key prefix).
func TestMain(m interface{ Run() int }, srv **Server) {
	dir, err := os.MkdirTemp("", "tokenbroker-test-etcd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	*srv, err = Start(ctx, Options{Dir: dir})
	cancel()
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	(*srv).Close()
	os.RemoveAll(dir)
	os.Exit(code)
}
