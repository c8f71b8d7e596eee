package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/seal"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The bench re-executes itself for the parts that need a process of their
// own: a replica that can be killed, and clean memory numbers. The role and
// its parameters travel in the environment; the child reports on stdout, one
// event per line.
const (
	roleEnv     = "TOKENBROKER_BENCH_ROLE"
	etcdEnv     = "TOKENBROKER_BENCH_ETCD"
	fakeEnv     = "TOKENBROKER_BENCH_FAKE"
	keyringEnv  = "TOKENBROKER_BENCH_KEYRING"
	idEnv       = "TOKENBROKER_BENCH_ID"
	ttlEnv      = "TOKENBROKER_BENCH_TTL"
	connsEnv    = "TOKENBROKER_BENCH_CONNS"
	debugEnv    = "TOKENBROKER_BENCH_DEBUG"
	roleReplica = "replica"
	roleMem     = "memreplica"
	roleScale   = "scale"
)

// runRole runs a child role and returns the exit code.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch role {
	case roleReplica:
		err = childReplica(ctx, false)
	case roleMem:
		err = childReplica(ctx, true)
	case roleScale:
		err = childScale(ctx)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenbroker-bench child:", err)
		return 1
	}
	return 0
}

type childEnv struct {
	etcd, fake string
	keys       *seal.Keyring
	id         string
	ttl        time.Duration
	conns      int
	debug      bool
}

func readChildEnv() (childEnv, error) {
	e := childEnv{etcd: os.Getenv(etcdEnv), fake: os.Getenv(fakeEnv), id: os.Getenv(idEnv), debug: os.Getenv(debugEnv) != ""}
	if e.etcd == "" || e.fake == "" {
		return e, errors.New("etcd endpoint and fake URL are required")
	}
	keys, err := seal.Load(os.Getenv(keyringEnv))
	if err != nil {
		return e, err
	}
	e.keys = keys
	if v := os.Getenv(ttlEnv); v != "" {
		if e.ttl, err = time.ParseDuration(v); err != nil {
			return e, err
		}
	}
	if v := os.Getenv(connsEnv); v != "" {
		if e.conns, err = strconv.Atoi(v); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (e childEnv) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{e.etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// emit writes one event line for the parent.
var emitMu sync.Mutex

func emit(format string, args ...any) {
	emitMu.Lock()
	defer emitMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

// childReplica serves one replica until SIGTERM, then stops as
// cmd/tokenbroker does. It reports "ready ADDR", and "leading NANOS" /
// "following NANOS" whenever its leadership changes (polled every
// millisecond). With mem, it also answers "start" and "stop" on stdin with
// memory samples taken every millisecond in between.
func childReplica(ctx context.Context, mem bool) error {
	e, err := readChildEnv()
	if err != nil {
		return err
	}
	cli, err := e.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	rep, err := startReplica(ctx, replicaOptions{
		Config: benchConfig(e.fake, e.ttl), Client: cli, Keyring: e.keys, ID: e.id, Logger: newLogger(e.debug),
	})
	if err != nil {
		return err
	}
	emit("ready %s", rep.Addr)
	go func() {
		leading := false
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if l := rep.B.Leading(); l != leading {
				leading = l
				if l {
					emit("leading %d", time.Now().UnixNano())
				} else {
					emit("following %d", time.Now().UnixNano())
				}
			}
		}
	}()
	if mem {
		go memControl(ctx, os.Stdin)
	}
	<-ctx.Done()
	rep.shutdown(2 * time.Second)
	return nil
}

// memory is a reading of the process's memory.
type memory struct {
	heap   uint64 // bytes in heap objects, live or not yet swept
	stacks uint64 // goroutine stacks
	allocs uint64 // cumulative bytes allocated
	rss    uint64
}

var memSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/stacks:bytes"},
	{Name: "/gc/heap/allocs:bytes"},
}

func readMemory() memory {
	s := make([]metrics.Sample, len(memSamples))
	copy(s, memSamples)
	metrics.Read(s)
	var m memory
	val := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	m.heap, m.stacks, m.allocs = val(0), val(1), val(2)
	m.rss = rss()
	return m
}

// rss is the resident set size from /proc/self/statm (0 off Linux).
func rss() uint64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// liveMemory collects garbage first, so heap is the live heap.
func liveMemory() memory {
	runtime.GC()
	runtime.GC()
	return readMemory()
}

// memControl answers "start" (collect garbage, take the baseline, sample
// every millisecond) and "stop" ("peak HEAP RSS ALLOCS": the largest deltas
// over the baseline, and bytes allocated in between).
func memControl(ctx context.Context, in io.Reader) {
	sc := bufio.NewScanner(in)
	var stopSampling func() memory
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "start":
			base := liveMemory()
			peak := base
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			var mu sync.Mutex
			go func() {
				defer close(done)
				t := time.NewTicker(time.Millisecond)
				defer t.Stop()
				for {
					m := readMemory()
					mu.Lock()
					peak.heap, peak.rss = max(peak.heap, m.heap), max(peak.rss, m.rss)
					peak.allocs = m.allocs
					mu.Unlock()
					select {
					case <-sctx.Done():
						return
					case <-t.C:
					}
				}
			}()
			stopSampling = func() memory {
				cancel()
				<-done
				m := readMemory()
				mu.Lock()
				defer mu.Unlock()
				p := memory{heap: max(peak.heap, m.heap), rss: max(peak.rss, m.rss), allocs: m.allocs}
				return memory{heap: p.heap - base.heap, rss: p.rss - base.rss, allocs: p.allocs - base.allocs}
			}
			emit("started")
		case "stop":
			if stopSampling == nil {
				emit("error not started")
				continue
			}
			d := stopSampling()
			stopSampling = nil
			emit("peak %d %d %d", d.heap, d.rss, d.allocs)
		}
	}
}

// proc is a child process of the bench.
type proc struct {
	id     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *tailBuffer
	exited chan struct{}
	err    error
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if t.buf.Len() > 8<<10 {
		b := t.buf.Bytes()
		keep := append([]byte(nil), b[len(b)-8<<10:]...)
		t.buf.Reset()
		t.buf.Write(keep)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// spawn starts the bench binary again in role, with env added.
func spawn(role, id string, env map[string]string, debug bool) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, idEnv+"="+id)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if debug {
		cmd.Env = append(cmd.Env, debugEnv+"=1")
	}
	setDeathSignal(cmd)
	p := &proc{id: id, cmd: cmd, lines: make(chan string, 64), stderr: &tailBuffer{}, exited: make(chan struct{})}
	if debug {
		cmd.Stderr = io.MultiWriter(p.stderr, os.Stderr)
	} else {
		cmd.Stderr = p.stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		p.err = cmd.Wait()
		close(p.lines)
		close(p.exited)
	}()
	return p, nil
}

// expect waits for a line starting with word and returns the rest.
func (p *proc) expect(ctx context.Context, word string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("child %s exited before %q: %v; stderr: %s", p.id, word, p.err, p.stderr.String())
			}
			if rest, found := strings.CutPrefix(line, word); found {
				return strings.TrimSpace(rest), nil
			}
		case <-t.C:
			return "", fmt.Errorf("child %s: no %q within %v; stderr: %s", p.id, word, timeout, p.stderr.String())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (p *proc) signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// stop sends SIGTERM and waits, then kills after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	// Nobody may read its output any more: drain it so it can exit.
	go func() {
		for range p.lines {
		}
	}()
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
