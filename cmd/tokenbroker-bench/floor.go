package main

import (
	"context"
	"sync/atomic"

	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
)

// The floor service answers a constant: the cheapest unary RPC a server can
// serve, so GetToken can be compared with it through the same chain. It
// takes a GetTokenRequest and answers a copy-free pb.Token of the same
// size as GetToken's, set once the connection is seeded.
const floorMethod = "/bench.Floor/Get"

type floorServer interface {
	Get(context.Context, *pb.GetTokenRequest) (*pb.Token, error)
}

type floorService struct {
	tok atomic.Pointer[pb.Token]
}

func (f *floorService) Get(context.Context, *pb.GetTokenRequest) (*pb.Token, error) {
	if t := f.tok.Load(); t != nil {
		return t, nil
	}
	return &pb.Token{}, nil
}

func floorGetHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(pb.GetTokenRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(floorServer).Get(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: floorMethod}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(floorServer).Get(ctx, req.(*pb.GetTokenRequest))
	}
	return interceptor(ctx, in, info, handler)
}

var floorServiceDesc = grpc.ServiceDesc{
	ServiceName: "bench.Floor",
	HandlerType: (*floorServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Get", Handler: floorGetHandler}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    "bench",
}

func registerFloor(s *grpc.Server, f *floorService) { s.RegisterService(&floorServiceDesc, f) }
