package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc"
)

func TestMain(m *testing.M) {
	// The bench re-executes its own binary for child roles; under go test
	// that binary is the test binary.
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	code := m.Run()
	if fix != nil {
		fix.close()
	}
	os.Exit(code)
}

// TestQuick runs every scenario with --quick and checks the report and chart.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark scenario at small size (about 30 s)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "BENCHMARKS.md")
	chart := filepath.Join(dir, "bench", "gettoken.png")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	if err := run(ctx, []string{"--quick", "--out", out, "--png", chart}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(raw)
	for _, sc := range scenarios {
		i := strings.Index(md, "## "+sc.title+"\n")
		if i < 0 {
			t.Errorf("report has no section %q", sc.title)
			continue
		}
		rest := md[i+len(sc.title)+4:]
		if j := strings.Index(rest, "\n## "); j >= 0 {
			rest = rest[:j]
		}
		if !strings.Contains(rest, "\n|---|") {
			t.Errorf("section %q has no table", sc.title)
		}
		if strings.Contains(rest, "The scenario failed") {
			t.Errorf("section %q reports a failure", sc.title)
		}
	}
	for _, want := range []string{"## Targets", "| CPU |", "nproc", "gettoken.png"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(log.String(), "PASS") && !strings.Contains(log.String(), "MISS") {
		t.Errorf("no verdict printed:\n%s", log.String())
	}
	f, err := os.Open(chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chart does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("chart is %v", b)
	}
	t.Logf("quick run:\n%s", log.String())
}

// fixture is one seeded replica shared by the microbenchmarks.
type fixture struct {
	c   *cluster
	rep *replica
	cc  *grpc.ClientConn
}

var (
	fix     *fixture
	fixOnce sync.Once
	fixErr  error
)

func (f *fixture) close() {
	if f.cc != nil {
		f.cc.Close()
	}
	f.c.close()
}

func getFixture(b *testing.B) *fixture {
	b.Helper()
	fixOnce.Do(func() {
		ctx := context.Background()
		c, err := newCluster(ctx, clusterOptions{})
		if err != nil {
			fixErr = err
			return
		}
		f := &fixture{c: c}
		if f.rep, err = c.startReplica(ctx, "replica-1", 0, nil); err == nil {
			err = c.seed(ctx, f.rep)
		}
		if err == nil {
			_, err = setFloorToken(ctx, f.rep)
		}
		var conns []*grpc.ClientConn
		if err == nil {
			conns, err = dialPool(f.rep.Addr, 1)
		}
		if err != nil {
			c.close()
			fixErr = err
			return
		}
		f.cc = conns[0]
		fix = f
	})
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
}

// BenchmarkGetTokenInProcess is the broker's cache read alone.
func BenchmarkGetTokenInProcess(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.rep.B.GetToken(ctx, connName, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetTokenGRPC is GetToken over loopback through the full chain.
func BenchmarkGetTokenGRPC(b *testing.B) {
	f := getFixture(b)
	stub := pb.NewTokenBrokerClient(f.cc)
	req := &pb.GetTokenRequest{Connection: connName}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			if _, err := stub.GetToken(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFloorGRPC is the constant RPC through the same chain.
func BenchmarkFloorGRPC(b *testing.B) {
	f := getFixture(b)
	req := &pb.GetTokenRequest{Connection: connName}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			if err := f.cc.Invoke(ctx, floorMethod, req, new(pb.Token)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
