//go:build unix && !linux

package cluster

import "syscall"

// sysProcAttr puts a child in its own process group, so the harness can
// signal it as a whole. Without Pdeathsig, t.Cleanup is what kills it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
