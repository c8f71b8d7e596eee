package cluster

import "syscall"

// sysProcAttr puts a child in its own process group (so the harness can
// signal it as a whole) and has the kernel kill it if the test process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
