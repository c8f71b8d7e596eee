package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// dialFlags are the flags of commands that talk to a running broker.
type dialFlags struct {
	addr, apiKeyFile, ca, cert, key string
	insecure                        bool
}

func (d *dialFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.addr, "addr", "127.0.0.1:7443", "broker gRPC address")
	fs.StringVar(&d.apiKeyFile, "api-key-file", "", "file holding an API key (sent as authorization: Bearer)")
	fs.StringVar(&d.ca, "tls-ca", "", "CA certificate of the broker (PEM); enables TLS")
	fs.StringVar(&d.cert, "tls-cert", "", "client certificate for mTLS (PEM)")
	fs.StringVar(&d.key, "tls-key", "", "client key for mTLS (PEM)")
	fs.BoolVar(&d.insecure, "plaintext", false, "plaintext gRPC (default when no --tls-ca is given and the address is loopback)")
}

func (d *dialFlags) dial() (*clients.Client, error) {
	var opts []clients.Option
	if d.ca != "" || d.cert != "" {
		opts = append(opts, clients.WithTLSFiles(d.ca, d.cert, d.key))
	} else {
		opts = append(opts, clients.WithInsecure())
	}
	if d.apiKeyFile != "" {
		raw, err := os.ReadFile(d.apiKeyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, clients.WithAPIKey(strings.TrimSpace(string(raw))))
	}
	return clients.Dial(d.addr, opts...)
}

// runStatus prints a table of connections.
func runStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var d dialFlags
	d.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := d.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Admin().ListConnections(ctx, &pb.ListConnectionsRequest{})
	if err != nil {
		return err
	}
	reps, err := c.Admin().ListReplicas(ctx, &pb.ListReplicasRequest{})
	if err != nil {
		return err
	}
	printStatus(os.Stdout, resp.GetConnections(), reps, time.Now())
	return nil
}

func printStatus(w io.Writer, conns []*pb.Connection, reps *pb.ListReplicasResponse, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTION\tSTATE\tGEN\tEXPIRES IN\tNEXT REFRESH\tLAST RESULT\tREFRESH TOKEN LEFT\tREASON")
	for _, c := range conns {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", c.GetName(),
			strings.TrimPrefix(c.GetState().String(), "CONNECTION_STATE_"), c.GetGeneration(),
			until(now, c.GetExpiresAt().AsTime(), c.GetExpiresAt() != nil),
			until(now, c.GetNextRefreshTime().AsTime(), c.GetNextRefreshTime() != nil),
			orDash(c.GetLastRefreshResult()),
			until(now, c.GetRefreshTokenExpiresAt().AsTime(), c.GetRefreshTokenExpiresAt() != nil),
			orDash(c.GetLastErrorReason()))
	}
	tw.Flush()
	if reps != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REPLICA\tADDRESS\tLEADER\tUP")
		for _, r := range reps.GetReplicas() {
			lead := ""
			if r.GetLeader() {
				lead = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.GetId(), r.GetAddress(), lead, now.Sub(r.GetStartedAt().AsTime()).Round(time.Second))
		}
		tw.Flush()
	}
}

func until(now, t time.Time, set bool) string {
	if !set {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		return "expired " + (-d).String() + " ago"
	}
	return d.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runSeed stores a refresh token read from stdin (never from a flag, which
// would land in the shell history and the process list).
func runSeed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	var d dialFlags
	d.register(fs)
	conn := fs.String("connection", "", "connection to seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conn == "" {
		return errors.New("--connection is required")
	}
	raw, err := io.ReadAll(io.LimitReader(os.Stdin, 16<<10))
	if err != nil {
		return err
	}
	rt := strings.TrimSpace(string(raw))
	if rt == "" {
		return errors.New("no refresh token on standard input")
	}
	c, err := d.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := c.Admin().SeedToken(ctx, &pb.SeedTokenRequest{Connection: *conn, Credential: &pb.SeedTokenRequest_RefreshToken{RefreshToken: rt}})
	if err != nil {
		return err
	}
	printStatus(os.Stdout, []*pb.Connection{resp.GetConnection()}, nil, time.Now())
	return nil
}

// runStorm fires many Invalidate calls for the current generation, spread
// over replicas, and reports what came back: a 401 storm made visible.
func runStorm(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	addrs := fs.String("addrs", "127.0.0.1:7443", "comma-separated replica addresses")
	conn := fs.String("connection", "demo", "connection")
	callers := fs.Int("callers", 300, "concurrent callers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cs []*clients.Client
	for _, a := range strings.Split(*addrs, ",") {
		c, err := clients.Dial(strings.TrimSpace(a), clients.WithInsecure())
		if err != nil {
			return err
		}
		defer c.Close()
		cs = append(cs, c)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tok, err := cs[0].GetToken(ctx, *conn, 0)
	if err != nil {
		return err
	}
	start := time.Now()
	var mu sync.Mutex
	got := map[uint64]int{}
	var errs []error
	var wg sync.WaitGroup
	for i := range *callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nt, err := cs[i%len(cs)].Invalidate(ctx, *conn, tok.Generation, "storm")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			got[nt.Generation]++
		}()
	}
	wg.Wait()
	fmt.Printf("%d callers over %d replicas reported generation %d in %v\n", *callers, len(cs), tok.Generation, time.Since(start).Round(time.Millisecond))
	for g, n := range got {
		fmt.Printf("  %d callers got generation %d\n", n, g)
	}
	if len(errs) > 0 {
		fmt.Printf("  %d errors, first: %v\n", len(errs), errs[0])
	}
	return nil
}
