package clients

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// serviceConfig retries the calls that are safe to repeat when the broker (or
// the way to it) answers UNAVAILABLE. GetToken and the Admin reads have no side
// effect; Invalidate is idempotent by generation (the broker refreshes a
// generation once however often it is reported). CallAnalytics, SeedToken and
// RefreshNow are left out: each may have acted before the error came back.
// retryThrottling stops retries when most calls of this connection fail, so a
// broker outage does not meet four times the load.
const serviceConfig = `{
  "methodConfig": [{
    "name": [
      {"service": "tokenbroker.v1.TokenBroker", "method": "GetToken"},
      {"service": "tokenbroker.v1.TokenBroker", "method": "Invalidate"},
      {"service": "tokenbroker.v1.Admin", "method": "ListConnections"},
      {"service": "tokenbroker.v1.Admin", "method": "GetConnection"},
      {"service": "tokenbroker.v1.Admin", "method": "ListReplicas"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}`

// An Option configures [Dial].
type Option func(*options)

type options struct {
	tlsConfig *tls.Config
	tlsFiles  bool
	caFile    string
	certFile  string
	keyFile   string
	insecure  bool
	apiKey    string
	userAgent string
	dialOpts  []grpc.DialOption
}

// WithTLS sets the TLS configuration used to reach the broker. Without WithTLS,
// WithTLSFiles or WithInsecure, Dial uses TLS with the system's roots.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg }
}

// WithTLSFiles reads PEM files when Dial is called: caFile holds the roots that
// verify the broker (empty: the system's roots); certFile and keyFile, when both
// are given, hold the client certificate for mutual TLS. It may be combined with
// WithTLS, whose configuration it completes. The files are read once.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) {
		o.tlsFiles, o.caFile, o.certFile, o.keyFile = true, caFile, certFile, keyFile
	}
}

// WithInsecure uses plaintext, for a broker on the same host or a demo. It
// cannot be combined with WithTLS or WithTLSFiles. With WithAPIKey, the target
// must be a loopback address, "localhost" or a unix socket: Dial refuses to send
// the key in clear over a network.
func WithInsecure() Option {
	return func(o *options) { o.insecure = true }
}

// WithAPIKey authenticates every RPC with the metadata
// "authorization: Bearer <key>". The key is only sent over TLS, or over
// WithInsecure to a loopback target.
func WithAPIKey(key string) Option {
	return func(o *options) { o.apiKey = key }
}

// WithUserAgent sets the user agent that the broker sees, such as
// "reports-service/1.4".
func WithUserAgent(ua string) Option {
	return func(o *options) { o.userAgent = ua }
}

// WithDialOptions adds gRPC dial options. They come after the ones Dial sets, so
// they can override them (for example grpc.WithDisableRetry).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Client is a connection to the broker. It is safe for concurrent use. Errors
// from its RPCs, including those made through TokenBroker and Admin, match the
// sentinel errors of this package with errors.Is and still carry their gRPC
// status.
type Client struct {
	conn  *grpc.ClientConn
	tb    tokenbrokerv1.TokenBrokerClient
	admin tokenbrokerv1.AdminClient
}

// Dial creates a client of the broker at target, a gRPC target such as
// "broker.internal:8443" or "dns:///broker.internal:8443". Like
// grpc.NewClient, it does not connect: the first RPC does. Close the client
// when done.
func Dial(target string, opts ...Option) (*Client, error) {
	if target == "" {
		return nil, errors.New("clients: empty target")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var creds credentials.TransportCredentials
	if o.insecure {
		if o.tlsConfig != nil || o.tlsFiles {
			return nil, errors.New("clients: WithInsecure cannot be combined with WithTLS or WithTLSFiles")
		}
		creds = insecure.NewCredentials()
	} else {
		cfg, err := o.buildTLS()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(mapErrorInterceptor),
	}
	if o.apiKey != "" {
		if o.insecure && !isLoopbackTarget(target) {
			return nil, fmt.Errorf("clients: refusing to send the API key in plaintext to %q, which is not a loopback address: use TLS", target)
		}
		dopts = append(dopts, grpc.WithPerRPCCredentials(apiKeyCredentials{key: o.apiKey, requireTLS: !o.insecure}))
	}
	if o.userAgent != "" {
		dopts = append(dopts, grpc.WithUserAgent(o.userAgent))
	}
	dopts = append(dopts, o.dialOpts...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("clients: %w", err)
	}
	return &Client{
		conn:  conn,
		tb:    tokenbrokerv1.NewTokenBrokerClient(conn),
		admin: tokenbrokerv1.NewAdminClient(conn),
	}, nil
}

func (o *options) buildTLS() (*tls.Config, error) {
	cfg := &tls.Config{}
	if o.tlsConfig != nil {
		cfg = o.tlsConfig.Clone()
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if !o.tlsFiles {
		return cfg, nil
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("clients: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("clients: no PEM certificate in CA file %s", o.caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.certFile != "" && o.keyFile != "":
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("clients: loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case o.certFile != "" || o.keyFile != "":
		return nil, errors.New("clients: WithTLSFiles needs both a certificate file and a key file for mutual TLS")
	}
	return cfg, nil
}

// isLoopbackTarget reports whether a gRPC target names this host: a unix
// socket, "localhost", or a loopback IP address, with or without a scheme.
func isLoopbackTarget(target string) bool {
	endpoint := target
	if scheme, rest, ok := strings.Cut(target, "://"); ok {
		if scheme == "unix" || scheme == "unix-abstract" {
			return true
		}
		// scheme://authority/endpoint: the authority names a resolver, not the
		// server.
		_, endpoint, ok = strings.Cut(rest, "/")
		if !ok {
			return false
		}
	} else if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// TokenBroker returns the generated client of the TokenBroker service, for
// calls that the convenience methods do not cover, such as CallAnalytics.
func (c *Client) TokenBroker() tokenbrokerv1.TokenBrokerClient { return c.tb }

// Admin returns the generated client of the Admin service.
func (c *Client) Admin() tokenbrokerv1.AdminClient { return c.admin }

// Close closes the connection to the broker.
func (c *Client) Close() error { return c.conn.Close() }

// GetToken returns the current token of connection. With minValidity > 0, the
// broker first has the token refreshed if it expires sooner than that.
func (c *Client) GetToken(ctx context.Context, connection string, minValidity time.Duration) (*Token, error) {
	req := &tokenbrokerv1.GetTokenRequest{Connection: connection}
	if minValidity > 0 {
		req.MinValidity = durationpb.New(minValidity)
	}
	resp, err := c.tb.GetToken(ctx, req)
	if err != nil {
		return nil, mapError(err)
	}
	return tokenFromProto(resp)
}

// Invalidate reports that an upstream rejected the token of generation (HTTP
// 401), and returns a token of a greater generation. reason is free text for
// the broker's logs, such as "401 from /reports"; never a token.
func (c *Client) Invalidate(ctx context.Context, connection string, generation uint64, reason string) (*Token, error) {
	resp, err := c.tb.Invalidate(ctx, &tokenbrokerv1.InvalidateRequest{
		Connection: connection,
		Generation: generation,
		Reason:     reason,
	})
	if err != nil {
		return nil, mapError(err)
	}
	tok, err := tokenFromProto(resp.GetToken())
	if err != nil {
		return nil, err
	}
	if tok.Generation <= generation {
		return nil, fmt.Errorf("clients: broker answered Invalidate(%d) with generation %d, not a newer one", generation, tok.Generation)
	}
	return tok, nil
}

// TokenSource returns a TokenSource of connection that uses c. It is
// [NewTokenSource](c, connection, opts...).
func (c *Client) TokenSource(connection string, opts ...TokenSourceOption) *TokenSource {
	return NewTokenSource(c, connection, opts...)
}
