package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/embedetcd"
)

// etcd is one embedded etcd member shared by the package's tests; each test
// works under its own key prefix.
var etcd *embedetcd.Server

func TestMain(m *testing.M) { embedetcd.TestMain(m, &etcd) }

var prefixes atomic.Int64

// newPrefix returns a key prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("/server-test-%d/", prefixes.Add(1)) }
