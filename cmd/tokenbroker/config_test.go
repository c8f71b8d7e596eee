package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// capture runs fn with os.Stdout going to a buffer.
func capture(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { var b bytes.Buffer; io.Copy(&b, r); done <- b.String() }()
	ferr := fn()
	w.Close()
	os.Stdout = old
	return <-done, ferr
}

// TestConfigCheck: on the broken example every problem is reported with its
// path, not only the first; the annotated example is clean.
func TestConfigCheck(t *testing.T) {
	out, err := capture(t, func() error { return runConfig(context.Background(), []string{"check", "../../examples/broken.yaml"}) })
	if err == nil {
		t.Fatal("config check accepted examples/broken.yaml")
	}
	lines := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  ") && strings.Contains(l, ": ") {
			lines++
		}
	}
	if lines < 6 {
		t.Fatalf("config check listed %d problems, want every one (at least 6):\n%s", lines, out)
	}
	for _, path := range []string{"connections[0].", "tls."} {
		if !strings.Contains(out, path) {
			t.Errorf("no problem reported under %s:\n%s", path, out)
		}
	}
	if out, err := capture(t, func() error {
		return runConfig(context.Background(), []string{"check", "../../examples/tokenbroker.yaml"})
	}); err != nil {
		t.Fatalf("examples/tokenbroker.yaml: %v\n%s", err, out)
	}
}
