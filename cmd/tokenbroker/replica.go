package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// replicaOptions is everything one replica needs.
type replicaOptions struct {
	Config        broker.Config
	Client        *clientv3.Client
	Prefix        string
	Keyring       *seal.Keyring
	ReplicaID     string
	Listen        string
	Advertise     string
	MetricsListen string
	Policy        server.Policy
	ServerOptions []grpc.ServerOption
	Logger        *slog.Logger
	// ShutdownGrace bounds the graceful stop.
	ShutdownGrace time.Duration
	// OnReady is called once the replica serves.
	OnReady func(b *broker.Broker, grpcAddr, metricsAddr string)
}

// runReplica serves one broker replica until ctx ends, then stops it
// gracefully: health goes NOT_SERVING, the broker resigns leadership, calls in
// flight drain within ShutdownGrace, and the broker stores any token it holds.
func runReplica(ctx context.Context, o replicaOptions) error {
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = 10 * time.Second
	}
	lis, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.Listen, err)
	}
	addr := lis.Addr().String()
	if o.Advertise == "" {
		o.Advertise = addr
	}
	b, err := broker.New(broker.Options{
		Config: o.Config, Client: o.Client, Prefix: o.Prefix, Keyring: o.Keyring,
		ReplicaID: o.ReplicaID, Address: o.Advertise, Version: version, Logger: o.Logger,
	})
	if err != nil {
		lis.Close()
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	m := newMetrics(b)
	reg.MustRegister(m)
	b.SetMetrics(m)

	srv := server.New(server.Options{
		Broker: b, Policy: o.Policy, Logger: o.Logger, ServerOptions: o.ServerOptions,
		Unary:  []grpc.UnaryServerInterceptor{grpcMetrics.UnaryServerInterceptor()},
		Stream: []grpc.StreamServerInterceptor{grpcMetrics.StreamServerInterceptor()},
	})
	grpcMetrics.InitializeMetrics(srv.GRPC)

	bctx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() { defer wg.Done(); b.Run(bctx) }()
	go func() {
		defer wg.Done()
		if err := srv.GRPC.Serve(lis); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
	}()

	var httpSrv *http.Server
	metricsAddr := ""
	if o.MetricsListen != "" {
		mlis, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			stopBroker()
			srv.GRPC.Stop()
			wg.Wait()
			return fmt.Errorf("listen %s: %w", o.MetricsListen, err)
		}
		metricsAddr = mlis.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			select {
			case <-b.Ready():
				fmt.Fprintln(w, "ready")
			default:
				http.Error(w, "cache not synced", http.StatusServiceUnavailable)
			}
		})
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}

	select {
	case <-b.Ready():
		srv.SetServing(true)
		o.Logger.Info("serving", "grpc", addr, "metrics", metricsAddr, "replica", b.ID())
		if o.OnReady != nil {
			o.OnReady(b, addr, metricsAddr)
		}
	case <-ctx.Done():
	case err := <-errc:
		stopBroker()
		srv.GRPC.Stop()
		wg.Wait()
		return err
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	o.Logger.Info("shutting down", "replica", b.ID(), "grace", o.ShutdownGrace)
	srv.SetServing(false)
	// Resign leadership first, so a successor leads at once; the cache keeps
	// following etcd while in-flight calls drain, so they see new tokens.
	b.StepDown()
	drained := make(chan struct{})
	go func() { srv.GRPC.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(o.ShutdownGrace):
		o.Logger.Warn("grace period over; closing remaining calls")
		srv.GRPC.Stop()
	}
	o.Logger.Debug("drained")
	stopBroker()
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		httpSrv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	return runErr
}
