package hatest

import (
	"os"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/cluster"
)

func TestMain(m *testing.M) {
	// Child processes of the harness (etcd members, replicas) run here.
	cluster.MaybeRunRole()
	os.Exit(m.Run())
}
