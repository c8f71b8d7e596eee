package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// report is everything the run measured, written as Markdown at the end.
type report struct {
	mu       sync.Mutex
	quick    bool
	args     string
	started  time.Time
	finished time.Time
	machine  machine
	loadEnd  string
	sections []*section
	targets  []target
	chart    *chartData
	pngPath  string
}

type machine struct {
	CPUs       int
	GOMAXPROCS int
	CPUModel   string
	GoVersion  string
	OS         string
	Load       string
	Kernel     string
	TempFS     string
}

func readMachine() machine {
	m := machine{
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, CPUModel: "unknown", Load: loadavg(),
		TempFS: fsType(os.TempDir()),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	return m
}

// loadavg is the 1, 5 and 15 minute load averages ("" off Linux).
func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// section is one scenario's part of the report.
type section struct {
	id, title string
	intro     []string
	tables    []table
	notes     []string
	err       error
	took      time.Duration
}

type table struct {
	caption string
	header  []string
	rows    [][]string
}

func (s *section) para(format string, args ...any) {
	s.intro = append(s.intro, fmt.Sprintf(format, args...))
}

func (s *section) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *section) table(caption string, header ...string) *table {
	s.tables = append(s.tables, table{caption: caption, header: header})
	return &s.tables[len(s.tables)-1]
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

// target is one goal of the issue with what was measured.
type target struct {
	scenario string
	goal     string
	measured string
	pass     bool
	info     bool // context for a target, not a target itself
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "MISS"
}

func (r *report) section(id, title string) *section {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &section{id: id, title: title}
	r.sections = append(r.sections, s)
	return s
}

func (r *report) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("# Benchmarks\n\n")
	p("Measured by `cmd/tokenbroker-bench` against real servers on loopback: embedded etcd, the fake Adobe (`fakeadobe`) and broker replicas, each with its own etcd client and its own gRPC server on its own port; clients connect over TCP. Failover runs the replicas as child processes (the bench binary re-executed) so that the leader can be killed with SIGKILL.\n\n")
	p("**Read the ratios, not the absolute numbers.** This machine has %d cores and is shared with other engineers running tests; load, clients and servers all compete for the same cores. Every comparison below is measured side by side in the same run, the variants interleaved in short rounds so that noise hits them alike. Absolute numbers move from run to run; the ratios are what the targets are about.\n\n", r.machine.CPUs)
	p("## Machine and run\n\n")
	p("| | |\n|---|---|\n")
	p("| CPU | %s |\n", r.machine.CPUModel)
	p("| cores (`nproc`) | %d (GOMAXPROCS %d) |\n", r.machine.CPUs, r.machine.GOMAXPROCS)
	p("| Go | %s %s |\n", r.machine.GoVersion, r.machine.OS)
	if r.machine.Kernel != "" {
		p("| kernel | %s |\n", r.machine.Kernel)
	}
	p("| etcd data directory | %s (%s), fsync on every commit |\n", os.TempDir(), r.machine.TempFS)
	p("| date | %s |\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	p("| load average at start / end | %s / %s |\n", r.machine.Load, r.loadEnd)
	mode := "full"
	if r.quick {
		mode = "quick (`--quick`: every scenario at a fraction of its size; not for conclusions)"
	}
	p("| mode | %s |\n", mode)
	p("| duration | %s |\n\n", r.finished.Sub(r.started).Round(time.Second))
	p("Reproduce with:\n\n```sh\ngo run ./cmd/tokenbroker-bench --out BENCHMARKS.md --png docs/bench/gettoken.png\n```\n\n")
	p("`--quick` runs everything at a fraction of the size (a smoke test of about 15 seconds; `go test ./cmd/tokenbroker-bench` runs it as `TestQuick`); `--only gettoken,storm,propagation,failover,call,scale` picks scenarios. Microbenchmarks: `go test -run '^$' -bench . ./cmd/tokenbroker-bench`. A full run takes about two minutes (see *duration* above); run it when the machine is quiet (`uptime`).\n\n")

	p("## Targets\n\n| scenario | target | measured | |\n|---|---|---|---|\n")
	for _, t := range r.targets {
		if t.info {
			p("| %s | _context:_ %s | %s | %s (context) |\n", t.scenario, t.goal, t.measured, strings.ToLower(verdict(t.pass)))
			continue
		}
		p("| %s | %s | %s | **%s** |\n", t.scenario, t.goal, t.measured, verdict(t.pass))
	}
	p("\n")
	for _, s := range r.sections {
		p("## %s\n\n", s.title)
		for _, para := range s.intro {
			p("%s\n\n", para)
		}
		if s.err != nil {
			p("**The scenario failed:** `%s`\n\n", strings.ReplaceAll(s.err.Error(), "`", "'"))
		}
		for _, t := range s.tables {
			if t.caption != "" {
				p("%s\n\n", t.caption)
			}
			p("| %s |\n|", strings.Join(t.header, " | "))
			for range t.header {
				p("---|")
			}
			p("\n")
			for _, row := range t.rows {
				p("| %s |\n", strings.Join(row, " | "))
			}
			p("\n")
		}
		if s.id == "gettoken" && r.pngPath != "" {
			p("![GetToken beside its floors](%s)\n\n", r.pngPath)
		}
		for _, n := range s.notes {
			p("- %s\n", n)
		}
		if len(s.notes) > 0 {
			p("\n")
		}
		p("_Scenario time: %s._\n\n", s.took.Round(100*time.Millisecond))
	}
	return bw.Flush()
}
