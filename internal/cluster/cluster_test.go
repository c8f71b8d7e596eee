package cluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/cluster"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

func TestMain(m *testing.M) {
	cluster.MaybeRunRole()
	os.Exit(m.Run())
}

// TestHarness starts one etcd member and one replica as processes, seeds,
// and checks that a graceful stop and a SIGKILL both come back.
func TestHarness(t *testing.T) {
	etcd := cluster.StartEtcd(t, 1)
	adobe := cluster.StartAdobe(t, fakeadobe.Options{})
	rs := cluster.StartReplicas(t, etcd, 1, cluster.ReplicaConfig{Connections: []broker.ConnectionConfig{adobe.Connection("demo")}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got := rs.MustLeader(30 * time.Second); got != 0 {
		t.Fatalf("leader %d", got)
	}
	if _, err := rs.Admin(0).SeedToken(ctx, &pb.SeedTokenRequest{Connection: "demo", Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: adobe.IssueRefreshToken()}}); err != nil {
		t.Fatal(err)
	}
	var h cluster.History
	get := func() *clients.Token {
		t.Helper()
		start := time.Now()
		tok, err := rs.Client(0).GetToken(ctx, "demo", 0)
		if err != nil {
			t.Fatal(err)
		}
		h.Add(0, "GetToken", start, tok)
		return tok
	}
	if g := get().Generation; g != 1 {
		t.Fatalf("generation %d after seed", g)
	}
	rs.Term(0)
	rs.Restart(0)
	if g := get().Generation; g != 1 {
		t.Fatalf("generation %d after a graceful restart", g)
	}
	rs.Kill(0)
	if code := rs.ExitCode(0); code != -1 {
		t.Fatalf("exit code %d after SIGKILL", code)
	}
	rs.Restart(0)
	tok := get()
	start := time.Now()
	nt, err := rs.Client(0).Invalidate(ctx, "demo", tok.Generation, "harness test")
	if err != nil || nt.Generation != 2 {
		t.Fatalf("Invalidate: %v %v", nt, err)
	}
	h.Add(0, "Invalidate", start, nt)
	h.Check(t)
	if n := adobe.InvalidGrants(); n != 0 {
		t.Fatalf("%d invalid_grant", n)
	}
}
