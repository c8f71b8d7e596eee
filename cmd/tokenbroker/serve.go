package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/internal/config"
	"github.com/tokenbroker/tokenbroker/internal/embedetcd"
	"github.com/tokenbroker/tokenbroker/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// runServe runs one replica from a config file.
func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "config file (YAML)")
	dataDir := fs.String("data-dir", "", "embedded etcd data directory (overrides data_dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("--config is required")
	}
	f, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		f.DataDir = *dataDir
	}
	log := newLogger(f.Log.Format, f.Log.Level)
	bcfg, err := f.Broker()
	if err != nil {
		return err
	}
	keys, err := loadKeyring(f, log)
	if err != nil {
		return err
	}
	cli, closeEtcd, err := etcdClient(ctx, f, log)
	if err != nil {
		return err
	}
	defer closeEtcd()
	sopts, err := serverCreds(f, log)
	if err != nil {
		return err
	}
	// config.Validate insists on at least one way for callers to
	// authenticate, so authentication is never off in serve.
	policy := server.Policy{APIKeys: f.APIKeyHashes(), Access: map[string]server.Access{}, ReflectionRequiresAuth: f.Auth.ReflectionRequiresAuth}
	for name, a := range f.Access() {
		policy.Access[name] = server.Access(a)
	}
	return runReplica(ctx, replicaOptions{
		Config: bcfg, Client: cli, Prefix: f.Etcd.Prefix, Keyring: keys,
		ReplicaID: f.ReplicaID, Listen: f.Listen, Advertise: f.Advertise, MetricsListen: f.MetricsListen,
		Policy: policy, ServerOptions: sopts, Logger: log,
	})
}

// loadKeyring reads the keyring file. With the embedded etcd, a missing
// keyring is created (readable only by the owner): the data and its key live
// on the same machine, so back them up together.
func loadKeyring(f *config.File, log *slog.Logger) (*seal.Keyring, error) {
	path := f.KeyringFile
	if path == "" {
		if !f.Embedded() {
			return nil, errors.New("keyring_file is required with an external etcd: every replica needs the same keys")
		}
		path = filepath.Join(f.DataDir, "keyring.json")
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && f.Embedded() {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := writeNewKeyring(path, "k1"); err != nil {
			return nil, err
		}
		log.Warn("created a keyring for the embedded store; back it up with the data directory", "path", path)
	}
	return seal.Load(path)
}

// etcdClient connects to the configured etcd, or starts the embedded one.
func etcdClient(ctx context.Context, f *config.File, log *slog.Logger) (*clientv3.Client, func(), error) {
	if f.Embedded() {
		if f.DataDir == "" {
			return nil, nil, errors.New("data_dir is required for the embedded etcd")
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		e, err := embedetcd.Start(sctx, embedetcd.Options{Dir: f.DataDir + "/etcd"})
		if err != nil {
			return nil, nil, err
		}
		log.Info("embedded single-node etcd", "dir", f.DataDir+"/etcd", "endpoint", e.Endpoint)
		return e.Client, e.Close, nil
	}
	cfg := clientv3.Config{
		Endpoints:   f.Etcd.Endpoints,
		DialTimeout: time.Duration(f.Etcd.DialTimeout),
		Username:    f.Etcd.Username,
		Logger:      zap.NewNop(),
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if f.Etcd.Username != "" {
		pw, err := f.Etcd.Password()
		if err != nil {
			return nil, nil, err
		}
		cfg.Password = pw
	}
	if t := f.Etcd.TLS; t.CAFile != "" || t.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pool, err := loadPool(t.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("etcd.tls.ca_file: %w", err)
			}
			tc.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("etcd.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: %w", err)
	}
	return cli, func() { cli.Close() }, nil
}

// serverCreds builds the gRPC transport credentials: TLS from files that are
// reloaded when they change, mTLS when a client CA is set, or plaintext when
// the config says so explicitly.
func serverCreds(f *config.File, log *slog.Logger) ([]grpc.ServerOption, error) {
	if f.TLS.CertFile == "" {
		if !f.TLS.Insecure {
			return nil, errors.New("tls.cert_file is required (or set tls.insecure: true for plaintext on loopback)")
		}
		log.Warn("plaintext gRPC: tokens cross the network unencrypted; use only on loopback")
		return nil, nil
	}
	r := &certReloader{cert: f.TLS.CertFile, key: f.TLS.KeyFile, log: log, every: time.Second}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.get() }}
	if f.TLS.ClientCAFile != "" {
		pool, err := loadPool(f.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		tc.ClientCAs = pool
		// Callers may authenticate by certificate or by API key.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// certReloader serves the certificate in the files, loading it again when
// either file's modification time changes (checked at most once a second).
type certReloader struct {
	cert, key string
	log       *slog.Logger
	every     time.Duration // how often the files are looked at (default 1s)

	mu      sync.Mutex
	loaded  *tls.Certificate
	mtime   time.Time
	checked time.Time
}

func (r *certReloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.loaded != nil && now.Sub(r.checked) < r.every {
		return r.loaded, nil
	}
	r.checked = now
	m := latestMtime(r.cert, r.key)
	if r.loaded != nil && !m.After(r.mtime) {
		return r.loaded, nil
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		if r.loaded != nil {
			r.log.Warn("reloading the TLS certificate failed; keeping the previous one", "err", err)
			return r.loaded, nil
		}
		return nil, fmt.Errorf("tls: %w", err)
	}
	if r.loaded != nil {
		r.log.Info("TLS certificate reloaded", "file", r.cert)
	}
	r.loaded, r.mtime = &c, m
	return r.loaded, nil
}

func latestMtime(paths ...string) time.Time {
	var t time.Time
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}
