package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/apiproxy"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Broker is what the services need of the domain.
type Broker interface {
	GetToken(ctx context.Context, name string, minValidity time.Duration) (broker.Token, error)
	Invalidate(ctx context.Context, name string, gen uint64, reason string) (broker.Token, error)
	Call(ctx context.Context, name string, req apiproxy.Request) (apiproxy.Response, error)
	Status(name string) (broker.Status, error)
	Statuses() ([]broker.Status, error)
	Seed(ctx context.Context, name string, s broker.Seed) (broker.Status, error)
	RefreshNow(ctx context.Context, name string) (broker.Status, error)
	Replicas(ctx context.Context) ([]broker.ReplicaInfo, error)
	Leader() string
}

var _ Broker = (*broker.Broker)(nil)

// tokenService implements tokenbroker.v1.TokenBroker.
type tokenService struct {
	pb.UnimplementedTokenBrokerServer
	b      Broker
	policy *Policy
}

func (s *tokenService) GetToken(ctx context.Context, req *pb.GetTokenRequest) (*pb.Token, error) {
	if err := checkConnection(req.GetConnection()); err != nil {
		return nil, err
	}
	var minValidity time.Duration
	if mv := req.GetMinValidity(); mv != nil {
		if err := mv.CheckValid(); err != nil || mv.AsDuration() < 0 {
			return nil, invalid("min_validity", "must be a non-negative duration")
		}
		minValidity = mv.AsDuration()
	}
	if err := s.policy.authorize(ctx, req.GetConnection(), PermToken); err != nil {
		return nil, err
	}
	tok, err := s.b.GetToken(ctx, req.GetConnection(), minValidity)
	if err != nil {
		return nil, toStatus(err)
	}
	return tokenProto(tok), nil
}

func (s *tokenService) Invalidate(ctx context.Context, req *pb.InvalidateRequest) (*pb.InvalidateResponse, error) {
	if err := checkConnection(req.GetConnection()); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), 1024); err != nil {
		return nil, err
	}
	if err := s.policy.authorize(ctx, req.GetConnection(), PermToken); err != nil {
		return nil, err
	}
	tok, err := s.b.Invalidate(ctx, req.GetConnection(), req.GetGeneration(), req.GetReason())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.InvalidateResponse{Token: tokenProto(tok)}, nil
}

func (s *tokenService) CallAnalytics(ctx context.Context, req *pb.CallAnalyticsRequest) (*pb.CallAnalyticsResponse, error) {
	if err := checkConnection(req.GetConnection()); err != nil {
		return nil, err
	}
	if req.GetPath() == "" {
		return nil, invalid("path", "is required")
	}
	if err := s.policy.authorize(ctx, req.GetConnection(), PermCall); err != nil {
		return nil, err
	}
	resp, err := s.b.Call(ctx, req.GetConnection(), apiproxy.Request{
		Method: req.GetMethod(), Path: req.GetPath(), Query: req.GetQuery(), Headers: req.GetHeaders(), Body: req.GetBody(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CallAnalyticsResponse{
		StatusCode: int32(resp.StatusCode), Headers: flatten(resp.Header), Body: resp.Body,
		Generation: resp.Generation, Attempts: int32(resp.Attempts),
	}, nil
}

func flatten(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return out
}

func tokenProto(t broker.Token) *pb.Token {
	return &pb.Token{
		Connection: t.Connection, AccessToken: t.AccessToken, TokenType: t.TokenType,
		ExpiresAt: timestamppb.New(t.ExpiresAt), Generation: t.Generation, ApiKey: t.APIKey,
	}
}

// adminService implements tokenbroker.v1.Admin.
type adminService struct {
	pb.UnimplementedAdminServer
	b      Broker
	policy *Policy
}

func (s *adminService) ListConnections(ctx context.Context, _ *pb.ListConnectionsRequest) (*pb.ListConnectionsResponse, error) {
	sts, err := s.b.Statuses()
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListConnectionsResponse{}
	for _, st := range sts {
		// Each caller sees the connections it administers.
		if s.policy.authorize(ctx, st.Name, PermAdmin) == nil {
			out.Connections = append(out.Connections, connectionProto(st))
		}
	}
	return out, nil
}

func (s *adminService) GetConnection(ctx context.Context, req *pb.GetConnectionRequest) (*pb.Connection, error) {
	if err := checkConnection(req.GetConnection()); err != nil {
		return nil, err
	}
	if err := s.policy.authorize(ctx, req.GetConnection(), PermAdmin); err != nil {
		return nil, err
	}
	st, err := s.b.Status(req.GetConnection())
	if err != nil {
		return nil, toStatus(err)
	}
	return connectionProto(st), nil
}

func (s *adminService) SeedToken(ctx context.Context, req *pb.SeedTokenRequest) (*pb.SeedTokenResponse, error) {
	if err := checkConnection(req.GetConnection()); err != nil {
		return nil, err
	}
	var seed broker.Seed
	switch c := req.GetCredential().(type) {
	case *pb.SeedTokenRequest_RefreshToken:
		if c.RefreshToken == "" || len(c.RefreshToken) > 8192 {
			return nil, invalid("refresh_token", "must be 1-8192 bytes")
		}
		seed.RefreshToken = c.RefreshToken
	case *pb.SeedTokenRequest_AuthorizationCode:
		ac := c.AuthorizationCode
		switch {
		case ac.GetCode() == "" || len(ac.GetCode()) > 8192:
			return nil, invalid("authorization_code.code", "must be 1-8192 bytes")
		case ac.GetRedirectUri() == "":
			return nil, invalid("authorization_code.redirect_uri", "is required")
		case len(ac.GetCodeVerifier()) > 128:
			return nil, invalid("authorization_code.code_verifier", "must be at most 128 characters (RFC 7636)")
		}
		seed = broker.Seed{Code: ac.GetCode(), CodeVerifier: ac.GetCodeVerifier(), RedirectURI: ac.GetRedirectUri()}
	default:
		return nil, invalid("credential", "give refresh_token or authorization_code")
	}
	if err := s.policy.authorize(ctx, req.GetConnection(), PermAdmin); err != nil {
		return nil, err
	}
	st, err := s.b.Seed(ctx, req.GetConnection(), seed)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SeedTokenResponse{Connection: connectionProto(st)}, nil
}

func (s *adminService) RefreshNow(ctx context.Context, req *pb.RefreshNowRequest) (*pb.RefreshNowResponse, error) {
	if err := checkConnection(req.GetConnection()); err != nil {
		return nil, err
	}
	if err := s.policy.authorize(ctx, req.GetConnection(), PermAdmin); err != nil {
		return nil, err
	}
	st, err := s.b.RefreshNow(ctx, req.GetConnection())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RefreshNowResponse{Connection: connectionProto(st)}, nil
}

func (s *adminService) ListReplicas(ctx context.Context, _ *pb.ListReplicasRequest) (*pb.ListReplicasResponse, error) {
	if !s.policy.Disabled && !s.policy.adminOfAny(ctx) {
		return nil, s.policy.authorize(ctx, "*", PermAdmin)
	}
	rs, err := s.b.Replicas(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListReplicasResponse{Leader: s.b.Leader()}
	for _, r := range rs {
		out.Replicas = append(out.Replicas, &pb.Replica{
			Id: r.ID, Address: r.Address, Leader: r.Leader, StartedAt: timestamppb.New(r.StartedAt), Version: r.Version,
		})
	}
	return out, nil
}

// adminOfAny reports whether the caller administers any connection.
func (p *Policy) adminOfAny(ctx context.Context) bool {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return false
	}
	for conn := range p.Access {
		if p.allowed(id.Name, conn, PermAdmin) {
			return true
		}
	}
	return false
}

var states = map[broker.State]pb.ConnectionState{
	broker.StateOK:          pb.ConnectionState_CONNECTION_STATE_OK,
	broker.StateNeedsSeed:   pb.ConnectionState_CONNECTION_STATE_NEEDS_SEED,
	broker.StateNeedsReauth: pb.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH,
	broker.StateDegraded:    pb.ConnectionState_CONNECTION_STATE_DEGRADED,
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func connectionProto(st broker.Status) *pb.Connection {
	return &pb.Connection{
		Name: st.Name, Provider: st.Provider, GrantType: st.Grant, State: states[st.State],
		Generation: st.Generation, ExpiresAt: ts(st.ExpiresAt), LastRefreshTime: ts(st.LastRefreshAt),
		LastRefreshResult: st.LastResult, LastErrorReason: st.Reason, Leader: st.Leader,
		NextRefreshTime: ts(st.NextRefreshAt), LoginTime: ts(st.LoginAt),
		RefreshTokenExpiresAt: ts(st.RefreshTokenExpiresAt), RefreshCount: st.Refreshes,
		ApiBaseUrl: st.APIBaseURL, TokenFingerprint: st.Fingerprint,
	}
}
