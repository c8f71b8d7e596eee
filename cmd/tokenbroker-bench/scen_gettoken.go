package main

import (
	"context"
	"fmt"
	"net"
	"time"

	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// poolSize is how many client connections (gRPC or etcd) the load of a
// variant is spread over; worker w uses connection w % poolSize.
const poolSize = 4

func dialPool(addr string, n int, opts ...grpc.DialOption) ([]*grpc.ClientConn, error) {
	var out []*grpc.ClientConn
	for range n {
		cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
		if err != nil {
			closeConns(out)
			return nil, err
		}
		cc.Connect()
		out = append(out, cc)
	}
	return out, nil
}

func closeConns(cs []*grpc.ClientConn) {
	for _, c := range cs {
		c.Close()
	}
}

type variant struct {
	name string
	fn   func(ctx context.Context, w int) error
}

// interleave runs every variant at conc for rounds rounds of d each, in a
// rotating order (A B C D, B C D A, ...), after a warm-up round of d/2 each.
func interleave(ctx context.Context, vs []variant, conc, rounds int, d time.Duration) []*agg {
	for _, v := range vs {
		closedLoop(ctx, conc, d/2, v.fn)
	}
	out := make([]*agg, len(vs))
	for i := range out {
		out[i] = &agg{}
	}
	for r := range rounds {
		for i := range vs {
			k := (r + i) % len(vs)
			out[k].add(closedLoop(ctx, conc, d, vs[k].fn))
		}
	}
	return out
}

func scenGetToken(ctx context.Context, r *runner, s *section) error {
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
	floorTok, err := setFloorToken(ctx, rep)
	if err != nil {
		return err
	}

	// A server with no interceptors at all, serving the same floor.
	bare := grpc.NewServer()
	bareFloor := &floorService{}
	bareFloor.tok.Store(proto.Clone(floorTok).(*pb.Token))
	registerFloor(bare, bareFloor)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go bare.Serve(lis)
	defer bare.Stop()

	conns, err := dialPool(rep.Addr, poolSize)
	if err != nil {
		return err
	}
	defer closeConns(conns)
	bareConns, err := dialPool(lis.Addr().String(), poolSize)
	if err != nil {
		return err
	}
	defer closeConns(bareConns)
	var ecli []*clientv3.Client
	for range poolSize {
		cli, err := c.newClient()
		if err != nil {
			return err
		}
		ecli = append(ecli, cli)
	}
	stubs := make([]pb.TokenBrokerClient, poolSize)
	for i, cc := range conns {
		stubs[i] = pb.NewTokenBrokerClient(cc)
	}
	req := &pb.GetTokenRequest{Connection: connName}
	vs := []variant{
		{"GetToken", func(ctx context.Context, w int) error {
			_, err := stubs[w%poolSize].GetToken(ctx, req)
			return err
		}},
		{"floor, same chain", func(ctx context.Context, w int) error {
			return conns[w%poolSize].Invoke(ctx, floorMethod, req, new(pb.Token))
		}},
		{"floor, no interceptors", func(ctx context.Context, w int) error {
			return bareConns[w%poolSize].Invoke(ctx, floorMethod, req, new(pb.Token))
		}},
		{"etcd Get", func(ctx context.Context, w int) error {
			_, err := ecli[w%poolSize].Get(ctx, recordKey)
			return err
		}},
	}
	for _, v := range vs {
		if err := v.fn(ctx, 0); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}

	s.para("Closed loop: each of *c* callers sends its next call as soon as the last one returns. Variants: **GetToken** through a replica (gRPC over loopback TCP, full server chain: Prometheus metrics, request id, logging, auth with authentication off, recovery); **floor, same chain**: a `bench.Floor/Get` RPC registered on the same `grpc.Server` that returns a constant `pb.Token` of the same size, so the difference to GetToken is the handler; **floor, no interceptors**: the same constant RPC on a bare `grpc.Server`; **etcd Get**: a linearizable `clientv3.Get` of the same record from embedded etcd. Calls go over %d client connections per variant. The variants take turns in rounds of %v (order rotating each round), %d rounds each after a warm-up; latencies are pooled over the rounds. The ratio to the floor is given two ways: the median over rounds of the ratio within each round (variants of a round run back to back, so load that comes and goes on the shared machine touches both alike; the target uses this one), and the ratio of the pooled throughputs.", poolSize, r.sz.round, r.sz.rounds)
	t := s.table("", "callers", "variant", "calls/s", "× same-chain floor (per-round median)", "× (pooled)", "p50", "p99", "p99.9", "errors")
	cd := &chartData{concs: r.sz.concs}
	for _, v := range vs {
		cd.variants = append(cd.variants, v.name)
	}
	cd.rate = make([][]float64, len(vs))
	cd.p99 = make([][]float64, len(vs))
	var ratio64, pooled64 float64
	for _, conc := range r.sz.concs {
		res := interleave(ctx, vs, conc, r.sz.rounds, r.sz.round)
		if err := ctx.Err(); err != nil {
			return err
		}
		floor := res[1].rate()
		for i, a := range res {
			t.row(fmt.Sprint(conc), vs[i].name, fmtRate(a.rate()), fmt.Sprintf("%.2f", pairedRatio(a, res[1])), fmt.Sprintf("%.2f", a.rate()/floor),
				fmtDur(a.pct(0.50)), fmtDur(a.pct(0.99)), fmtDur(a.pct(0.999)), errCell(a.errs, a.lastErr))
			cd.rate[i] = append(cd.rate[i], a.rate())
			cd.p99[i] = append(cd.p99[i], float64(a.pct(0.99))/float64(time.Millisecond))
		}
		paired := pairedRatio(res[0], res[1])
		if conc == 64 {
			ratio64, pooled64 = paired, res[0].rate()/floor
		}
		r.logf("c=%d: GetToken %s/s, floor %s/s (%.2f× per-round median, %.2f× pooled), bare %s/s, etcd %s/s", conc, fmtRate(res[0].rate()), fmtRate(floor), paired, res[0].rate()/floor, fmtRate(res[2].rate()), fmtRate(res[3].rate()))
	}
	r.report.chart = cd
	s.note("The logging interceptor formats its per-call record (JSON, info level) into `io.Discard`: the formatting cost is in, the I/O is not.")
	s.note("Load generator, servers and etcd share the same cores, so at high concurrency the client side takes a large share of the CPU; that share is the same for every variant.")
	if ratio64 > 0 {
		r.target("1 GetToken", "throughput at 64 callers ≥ 0.85 × same-chain floor", fmt.Sprintf("%.2f × (median of per-round ratios; pooled %.2f ×)", ratio64, pooled64), ratio64 >= 0.85)
	}
	return nil
}

// setFloorToken has the replica's floor answer a token of the same shape and
// size as its GetToken's.
func setFloorToken(ctx context.Context, rep *replica) (*pb.Token, error) {
	tok, err := rep.B.GetToken(ctx, connName, 0)
	if err != nil {
		return nil, err
	}
	t := &pb.Token{Connection: tok.Connection, AccessToken: tok.AccessToken, TokenType: tok.TokenType,
		ExpiresAt: timestamppb.New(tok.ExpiresAt), Generation: tok.Generation, ApiKey: tok.APIKey}
	rep.Floor.tok.Store(t)
	return t, nil
}

func errCell(n int, err error) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%v)", n, err)
}
