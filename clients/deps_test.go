package clients_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDependencies keeps package clients light for the services that import
// it: no broker, no server, no etcd.
func TestDependencies(t *testing.T) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "list", "-deps", "./clients/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps ./clients/...: %v\n%s", err, stderr)
	}
	forbidden := []string{
		"go.etcd.io", // etcd, and its bbolt and raft
		"github.com/tokenbroker/tokenbroker/broker",
		"github.com/tokenbroker/tokenbroker/server",
		"github.com/tokenbroker/tokenbroker/cmd",
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) == 0 {
		t.Fatal("go list printed no packages")
	}
	for _, pkg := range pkgs {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				t.Errorf("clients depends on %s", pkg)
			}
		}
	}
}
