package server_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/embedetcd"
)

// etcd is one embedded etcd member shared by the package's tests; each test
// works under its own key prefix.
var etcd *embedetcd.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "server-test-etcd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	etcd, err = embedetcd.Start(ctx, embedetcd.Options{Dir: dir})
	cancel()
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	etcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

var prefixes atomic.Int64

// newPrefix returns a key prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("/server-test-%d/", prefixes.Add(1)) }
