// Package clientstest runs an in-process fake of the broker's TokenBroker
// service on a loopback port, for the tests of services that use package
// clients, and for its own tests and examples.
//
// The fake keeps the broker's rules about generations: each connection's
// token has a generation that grows by one with each new token;
// Invalidate(g) of the current generation mints the next token, and reports
// of an older generation get the current token without a new one. Access
// tokens are "<connection>-access-<generation>". It does not authenticate
// callers, does not implement CallAnalytics or the Admin service, and speaks
// plaintext unless given grpc.Creds with WithServerOptions. Inject failures
// and observe calls with an interceptor (WithServerOptions and
// grpc.ChainUnaryInterceptor) and [Error].
package clientstest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// An Option configures [Start].
type Option func(*Server)

// WithConnection adds a connection with a first token (generation 1), whose
// tokens carry apiKey (may be "").
func WithConnection(name, apiKey string) Option {
	return func(s *Server) { s.conns[name] = &connection{apiKey: apiKey} }
}

// WithClock sets the clock that token expiries are computed from. The default
// is time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.now = now }
}

// WithLifetime sets the lifetime of each token. The default is one hour.
func WithLifetime(d time.Duration) Option {
	return func(s *Server) { s.lifetime = d }
}

// WithServerOptions adds options to the gRPC server, such as interceptors or
// TLS credentials.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(s *Server) { s.serverOpts = append(s.serverOpts, opts...) }
}

// Server is a running fake broker.
type Server struct {
	tokenbrokerv1.UnimplementedTokenBrokerServer

	now        func() time.Time
	lifetime   time.Duration
	serverOpts []grpc.ServerOption
	grpc       *grpc.Server
	lis        net.Listener
	served     chan error

	mu    sync.Mutex
	conns map[string]*connection
	calls map[string]int
}

type connection struct {
	apiKey string
	tok    *tokenbrokerv1.Token
}

// Start starts a fake broker on 127.0.0.1 and a free port. Close it when done.
func Start(opts ...Option) (*Server, error) {
	s := &Server{
		now:      time.Now,
		lifetime: time.Hour,
		conns:    make(map[string]*connection),
		calls:    make(map[string]int),
		served:   make(chan error, 1),
	}
	for _, opt := range opts {
		opt(s)
	}
	for name, c := range s.conns {
		s.mint(name, c)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("clientstest: %w", err)
	}
	s.lis = lis
	s.grpc = grpc.NewServer(s.serverOpts...)
	tokenbrokerv1.RegisterTokenBrokerServer(s.grpc, s)
	go func() { s.served <- s.grpc.Serve(lis) }()
	return s, nil
}

// Addr returns the address to dial, "127.0.0.1:<port>".
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Close stops the server at once and waits until it has stopped.
func (s *Server) Close() {
	s.grpc.Stop()
	<-s.served
}

// Token returns the current token of connection, or nil if there is no such
// connection.
func (s *Server) Token(connection string) *tokenbrokerv1.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[connection]
	if c == nil {
		return nil
	}
	return cloneToken(c.tok)
}

// Rotate gives connection its next token, as the broker's refresh ahead of
// expiry does, and returns it (nil if there is no such connection).
func (s *Server) Rotate(connection string) *tokenbrokerv1.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[connection]
	if c == nil {
		return nil
	}
	s.mint(connection, c)
	return cloneToken(c.tok)
}

// Calls returns how many times the handler of method ("GetToken",
// "Invalidate") ran. Calls that an interceptor answered do not count.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Error returns a gRPC status error with code, message and an ErrorInfo
// detail of domain "tokenbroker.v1" and reason's name, as the broker's errors.
func Error(code codes.Code, reason tokenbrokerv1.ErrorReason, message string) error {
	st, err := status.New(code, message).WithDetails(&errdetails.ErrorInfo{
		Domain: "tokenbroker.v1",
		Reason: reason.String(),
	})
	if err != nil {
		panic(err) // only if ErrorInfo could not be marshalled
	}
	return st.Err()
}

// mint gives c its next token. s.mu is held or s is not serving yet.
func (s *Server) mint(name string, c *connection) {
	gen := c.tok.GetGeneration() + 1
	c.tok = &tokenbrokerv1.Token{
		Connection:  name,
		AccessToken: fmt.Sprintf("%s-access-%d", name, gen),
		TokenType:   "Bearer",
		ExpiresAt:   timestamppb.New(s.now().Add(s.lifetime)),
		Generation:  gen,
		ApiKey:      c.apiKey,
	}
}

func (s *Server) lookup(method, name string) (*connection, error) {
	s.calls[method]++
	if name == "" {
		return nil, Error(codes.InvalidArgument, tokenbrokerv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, "connection is required")
	}
	c := s.conns[name]
	if c == nil {
		return nil, Error(codes.NotFound, tokenbrokerv1.ErrorReason_ERROR_REASON_CONNECTION_NOT_FOUND, fmt.Sprintf("no connection %q", name))
	}
	return c, nil
}

// GetToken returns the current token; with min_validity, a new one if the
// current one expires sooner.
func (s *Server) GetToken(_ context.Context, req *tokenbrokerv1.GetTokenRequest) (*tokenbrokerv1.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookup("GetToken", req.GetConnection())
	if err != nil {
		return nil, err
	}
	if mv := req.GetMinValidity(); mv != nil {
		if mv.AsDuration() >= s.lifetime {
			return nil, Error(codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_MIN_VALIDITY_UNSATISFIABLE, "min_validity is longer than the token lifetime")
		}
		if !s.now().Add(mv.AsDuration()).Before(c.tok.GetExpiresAt().AsTime()) {
			s.mint(req.GetConnection(), c)
		}
	}
	return cloneToken(c.tok), nil
}

// Invalidate mints the next token if the current generation is reported, and
// returns the current token if an older one is.
func (s *Server) Invalidate(_ context.Context, req *tokenbrokerv1.InvalidateRequest) (*tokenbrokerv1.InvalidateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookup("Invalidate", req.GetConnection())
	if err != nil {
		return nil, err
	}
	switch g := req.GetGeneration(); {
	case g > c.tok.GetGeneration():
		return nil, Error(codes.InvalidArgument, tokenbrokerv1.ErrorReason_ERROR_REASON_GENERATION_AHEAD,
			fmt.Sprintf("generation %d is ahead of %d", g, c.tok.GetGeneration()))
	case g == c.tok.GetGeneration():
		s.mint(req.GetConnection(), c)
	}
	return &tokenbrokerv1.InvalidateResponse{Token: cloneToken(c.tok)}, nil
}

func cloneToken(t *tokenbrokerv1.Token) *tokenbrokerv1.Token {
	return &tokenbrokerv1.Token{
		Connection:  t.GetConnection(),
		AccessToken: t.GetAccessToken(),
		TokenType:   t.GetTokenType(),
		ExpiresAt:   timestamppb.New(t.GetExpiresAt().AsTime()),
		Generation:  t.GetGeneration(),
		ApiKey:      t.GetApiKey(),
	}
}
