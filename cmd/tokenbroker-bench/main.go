// Command tokenbroker-bench measures the broker against real servers on
// loopback and writes a Markdown report with a PNG chart.
//
//	go run ./cmd/tokenbroker-bench [--quick] [--out BENCHMARKS.md] [--png docs/bench/gettoken.png] [--only gettoken,storm,...]
//
// Scenarios: gettoken (throughput and latency beside floors), storm (1000
// Invalidate callers over 3 replicas), propagation (leader write to every
// replica serving), failover (SIGKILL and SIGTERM of the leader process),
// call (CallAnalytics overhead and memory) and scale (10,000 connections).
// Each target is printed with PASS or MISS; a MISS does not fail the run, an
// error in a scenario does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tokenbroker-bench:", err)
		os.Exit(1)
	}
}

// sizes are the knobs that --quick turns down.
type sizes struct {
	round      time.Duration // one interleaved round of one variant
	rounds     int
	concs      []int
	stormN     int
	stormRuns  int
	stormLat   time.Duration
	propRounds int
	ttls       []time.Duration
	killRounds int
	termRounds int
	callRound  time.Duration
	callRounds int
	callDelays []time.Duration
	bigBody    int
	memRuns    int
	scaleConns int
}

var fullSizes = sizes{
	round: 100 * time.Millisecond, rounds: 24, concs: []int{1, 16, 64, 256},
	stormN: 1000, stormRuns: 5, stormLat: 100 * time.Millisecond,
	propRounds: 30,
	ttls:       []time.Duration{2 * time.Second, 5 * time.Second}, killRounds: 3, termRounds: 5,
	callRound: 250 * time.Millisecond, callRounds: 6, callDelays: []time.Duration{0, 20 * time.Millisecond},
	bigBody: 20 << 20, memRuns: 3,
	scaleConns: 10000,
}

var quickSizes = sizes{
	round: 40 * time.Millisecond, rounds: 2, concs: []int{1, 16, 64, 256},
	stormN: 200, stormRuns: 1, stormLat: 100 * time.Millisecond,
	propRounds: 5,
	ttls:       []time.Duration{2 * time.Second}, killRounds: 1, termRounds: 1,
	callRound: 40 * time.Millisecond, callRounds: 2, callDelays: []time.Duration{0, 20 * time.Millisecond},
	bigBody: 20 << 20, memRuns: 1,
	scaleConns: 1000,
}

// runner carries what scenarios share.
type runner struct {
	sz     sizes
	debug  bool
	out    io.Writer
	report *report
}

// target records a goal of the issue with its verdict and prints it.
func (r *runner) target(scenario, goal, measured string, pass bool) {
	r.addTarget(target{scenario: scenario, goal: goal, measured: measured, pass: pass})
}

// aside records a comparison that is not a target of the issue but puts
// one in perspective; it is printed and reported, not counted.
func (r *runner) aside(scenario, goal, measured string, pass bool) {
	r.addTarget(target{scenario: scenario, goal: goal, measured: measured, pass: pass, info: true})
}

func (r *runner) addTarget(t target) {
	r.report.mu.Lock()
	r.report.targets = append(r.report.targets, t)
	r.report.mu.Unlock()
	v := verdict(t.pass)
	if t.info {
		v = "info " + strings.ToLower(v)
	}
	fmt.Fprintf(r.out, "%s  %s: %s — measured %s\n", v, t.scenario, t.goal, t.measured)
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "      "+format+"\n", args...)
}

type scenario struct {
	id, title string
	run       func(ctx context.Context, r *runner, s *section) error
}

var scenarios = []scenario{
	{"gettoken", "1. GetToken throughput and latency", scenGetToken},
	{"storm", "2. Invalidate storm", scenStorm},
	{"propagation", "3. Propagation of a new token", scenPropagation},
	{"failover", "4. Failover", scenFailover},
	{"call", "5. CallAnalytics overhead and memory", scenCall},
	{"scale", "6. Scale: many connections", scenScale},
}

func scenarioIDs() []string {
	ids := make([]string, len(scenarios))
	for i, s := range scenarios {
		ids[i] = s.id
	}
	return ids
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tokenbroker-bench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	quick := fs.Bool("quick", false, "run every scenario at a fraction of its size (smoke test)")
	out := fs.String("out", "BENCHMARKS.md", "Markdown report to write")
	png := fs.String("png", "docs/bench/gettoken.png", "PNG chart of scenario 1 to write (\"\": none)")
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(scenarioIDs(), ","))
	debug := fs.Bool("debug", false, "log replica warnings and child process output to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	selected := map[string]bool{}
	if *only != "" {
		for _, id := range strings.Split(*only, ",") {
			id = strings.TrimSpace(id)
			if !slices.Contains(scenarioIDs(), id) {
				return fmt.Errorf("--only: unknown scenario %q (known: %s)", id, strings.Join(scenarioIDs(), ", "))
			}
			selected[id] = true
		}
	}
	sz := fullSizes
	if *quick {
		sz = quickSizes
	}
	rep := &report{quick: *quick, args: strings.Join(args, " "), started: time.Now(), machine: readMachine()}
	r := &runner{sz: sz, debug: *debug, out: stdout, report: rep}
	fmt.Fprintf(stdout, "tokenbroker-bench: %d cores, %s, load %s\n", rep.machine.CPUs, rep.machine.CPUModel, rep.machine.Load)

	var failed []string
	for _, sc := range scenarios {
		if len(selected) > 0 && !selected[sc.id] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stdout, "== %s\n", sc.title)
		sec := rep.section(sc.id, sc.title)
		start := time.Now()
		err := sc.run(ctx, r, sec)
		sec.took = time.Since(start)
		if err != nil {
			sec.err = err
			failed = append(failed, sc.id)
			r.target(sc.title, "scenario completes", "error: "+err.Error(), false)
		}
		fmt.Fprintf(stdout, "   (%s)\n", sec.took.Round(100*time.Millisecond))
	}
	rep.finished = time.Now()
	rep.loadEnd = loadavg()

	if *png != "" && rep.chart != nil {
		if err := writeChart(*png, rep.chart, "GetToken beside its floors ("+rep.machine.CPUModel+", "+fmt.Sprint(rep.machine.CPUs)+" cores, shared)"); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		rel, err := filepath.Rel(filepath.Dir(*out), *png)
		if err != nil || filepath.IsAbs(*png) != filepath.IsAbs(*out) {
			rel = *png
		}
		rep.pngPath = filepath.ToSlash(rel)
		fmt.Fprintf(stdout, "wrote %s\n", *png)
	}
	if dir := filepath.Dir(*out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := rep.write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	pass, miss := 0, 0
	for _, t := range rep.targets {
		if t.info {
			continue
		}
		if t.pass {
			pass++
		} else {
			miss++
		}
	}
	fmt.Fprintf(stdout, "wrote %s: %d PASS, %d MISS, in %s\n", *out, pass, miss, rep.finished.Sub(rep.started).Round(time.Second))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(failed) > 0 {
		return errors.New("scenarios failed: " + strings.Join(failed, ", "))
	}
	return nil
}
