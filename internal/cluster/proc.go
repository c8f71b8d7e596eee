package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Deadlines of the harness. The machine may be loaded (two cores, race
// detector in every process), so they are generous; nothing waits for a
// fixed time.
const (
	StartTimeout = 60 * time.Second
	StopTimeout  = 30 * time.Second
)

// proc is one child process: a re-executed test binary running a role. It
// may be started again after it ended (Restart), with the same configuration
// and log file.
type proc struct {
	t    testing.TB
	name string
	role string
	cfg  any      // JSON in EnvConfig
	env  []string // extra environment
	log  string   // stdout and stderr, appended across restarts

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run ended
	state   *os.ProcessState
	stopped bool // SIGSTOPped
	starts  int
}

// EnvLogDir, if set, names a directory where the logs of child processes are
// kept after the test (by default they live in t.TempDir()).
const EnvLogDir = "TOKENBROKER_HARNESS_LOGDIR"

func newProc(t testing.TB, dir, name, role string, cfg any, env []string) *proc {
	if d := os.Getenv(EnvLogDir); d != "" {
		dir = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return &proc{t: t, name: name, role: role, cfg: cfg, env: env, log: filepath.Join(dir, name+".log")}
}

// start starts the process; it does not wait for it to serve.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is running", p.name)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(p.cfg)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	p.starts++
	fmt.Fprintf(f, "===== harness: start %d of %s at %s =====\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	// -test.run=^$: if a package forgot MaybeRunRole, the child runs no test
	// (and fails its readiness check) instead of recursing.
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), EnvRole+"="+p.role, EnvConfig+"="+string(raw))
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.state, p.stopped = cmd, done, nil, false
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *proc) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// running reports whether the process has been started and has not ended.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exitedLocked()
}

// live reports whether the process runs and is not stopped.
func (p *proc) live() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exitedLocked() && !p.stopped
}

// exited returns a channel closed when the current run ends.
func (p *proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// exitCode is the exit code of the last run (-1: killed by a signal or still
// running).
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return fmt.Errorf("%s is not running", p.name)
	}
	pid := p.cmd.Process.Pid
	// The child leads its own process group (Setpgid): signal the group.
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.name, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.stopped = true
	case syscall.SIGCONT:
		p.stopped = false
	}
	return nil
}

// wait waits for the current run to end.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.exited():
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", p.name, timeout)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(StopTimeout)
}

// term sends SIGTERM (and SIGCONT, in case it is stopped) and waits for a
// graceful exit.
func (p *proc) term() error {
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	_ = p.signal(syscall.SIGCONT)
	return p.wait(StopTimeout)
}

// cleanup kills the process if it runs.
func (p *proc) cleanup() {
	if p.running() {
		_ = p.kill()
	}
}

// logText returns the log, at most the last max bytes.
func (p *proc) logText(max int) string {
	raw, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(raw) > max {
		raw = append([]byte(fmt.Sprintf("... (%d bytes cut)\n", len(raw)-max)), raw[len(raw)-max:]...)
	}
	return string(raw)
}

// checkLog fails the test if the child found a data race.
func (p *proc) checkLog(t testing.TB) {
	raw, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	if bytes.Contains(raw, []byte("WARNING: DATA RACE")) {
		t.Errorf("%s: the race detector found a data race (log follows)", p.name)
		t.Logf("----- %s log -----\n%s", p.name, p.logText(256<<10))
	}
}

// dump logs the tail of the process's log.
func (p *proc) dump(t testing.TB) {
	t.Logf("----- %s (%s) -----\n%s", p.name, p.log, p.logText(48<<10))
}

// freePort returns a free loopback address.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freePorts returns n distinct free loopback addresses.
func freePorts(n int) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// poll calls cond until it returns nil, the deadline passes or the process
// exits; it returns the last error.
func poll(timeout time.Duration, exited <-chan struct{}, cond func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return nil
		}
		if exited != nil {
			select {
			case <-exited:
				return fmt.Errorf("process exited: %w", err)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errNotRunning = errors.New("not running")
