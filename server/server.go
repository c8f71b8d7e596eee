package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Message size limits. A CallAnalytics response carries the upstream body.
const (
	MaxRecvMsgSize = 16 << 20
	MaxSendMsgSize = 80 << 20
)

// Options configure the gRPC server.
type Options struct {
	Broker Broker
	Policy Policy
	Logger *slog.Logger
	// ServerOptions are added last (transport credentials, for example).
	ServerOptions []grpc.ServerOption
	// Unary and Stream interceptors run first (metrics).
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
}

// Server is the gRPC server with its health service.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
}

// Services are the names health reports on.
var Services = []string{pb.TokenBroker_ServiceDesc.ServiceName, pb.Admin_ServiceDesc.ServiceName}

// New builds the server. Interceptor order follows go-grpc-middleware's
// example: metrics, logging, authentication (not for health, and not for
// reflection unless configured), recovery innermost.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "grpc")
	policy := opts.Policy
	if policy.Disabled {
		log.Warn("authentication is off: every caller may get every token (demo mode; never on a shared network)")
	}
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			f := logging.Fields{"request_id", requestID(ctx)}
			if id, ok := IdentityFrom(ctx); ok {
				f = append(f, "caller", id.Name)
			}
			return f
		}),
	}
	needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		svc := c.Service
		if svc == healthpb.Health_ServiceDesc.ServiceName {
			return false
		}
		if strings.HasPrefix(svc, "grpc.reflection.") {
			return policy.ReflectionRequiresAuth
		}
		return true
	})
	panicHandler := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		// The panic value may hold anything, secrets included: log where, not what.
		log.ErrorContext(ctx, "panic in handler", "request_id", requestID(ctx), "stack", string(debug.Stack()))
		return newStatus(codes.Internal, pb.ErrorReason_ERROR_REASON_INTERNAL, "internal error", nil)
	})
	unary := append([]grpc.UnaryServerInterceptor{}, opts.Unary...)
	unary = append(unary,
		requestIDUnary,
		logging.UnaryServerInterceptor(logger, logOpts...),
		selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(policy.authenticate), needsAuth),
		recovery.UnaryServerInterceptor(panicHandler),
	)
	stream := append([]grpc.StreamServerInterceptor{}, opts.Stream...)
	stream = append(stream,
		logging.StreamServerInterceptor(logger, logOpts...),
		selector.StreamServerInterceptor(auth.StreamServerInterceptor(policy.authenticate), needsAuth),
		recovery.StreamServerInterceptor(panicHandler),
	)
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxSendMsgSize(MaxSendMsgSize),
	}
	sopts = append(sopts, opts.ServerOptions...)
	gs := grpc.NewServer(sopts...)
	pb.RegisterTokenBrokerServer(gs, &tokenService{b: opts.Broker, policy: &policy})
	pb.RegisterAdminServer(gs, &adminService{b: opts.Broker, policy: &policy})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, s := range Services {
		hs.SetServingStatus(s, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return &Server{GRPC: gs, Health: hs}
}

// SetServing marks every service serving (once the cache is synced) or not.
func (s *Server) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.Health.SetServingStatus("", st)
	for _, svc := range Services {
		s.Health.SetServingStatus(svc, st)
	}
}

type requestIDKey struct{}

func requestIDUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return handler(context.WithValue(ctx, requestIDKey{}, hex.EncodeToString(b)), req)
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
