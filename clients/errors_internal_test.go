package clients

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMapErrorPassesThrough(t *testing.T) {
	if err := mapError(nil); err != nil {
		t.Errorf("mapError(nil) = %v", err)
	}
	plain := errors.New("plain")
	if err := mapError(plain); err != plain {
		t.Errorf("mapError(plain) = %v, want it unchanged", err)
	}
	mapped := mapError(status.Error(codes.NotFound, "x"))
	if again := mapError(mapped); again != mapped {
		t.Errorf("mapError of a mapped error = %v, want it unchanged", again)
	}
	wrapped := fmt.Errorf("context: %w", mapped)
	if again := mapError(wrapped); again != wrapped {
		t.Errorf("mapError of a wrapped mapped error = %v, want it unchanged", again)
	}
	if !errors.Is(wrapped, ErrNotFound) || Reason(wrapped) != "" || status.Code(wrapped) != codes.NotFound {
		t.Errorf("wrapped error lost its sentinel or code: %v", wrapped)
	}
}

func TestIsLoopbackTarget(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1:8443":                true,
		"127.0.0.2:8443":                true,
		"localhost:8443":                true,
		"LOCALHOST:8443":                true,
		"[::1]:8443":                    true,
		"dns:///localhost:8443":         true,
		"passthrough:///127.0.0.1:8443": true,
		"dns://8.8.8.8/localhost:8443":  true,
		"unix:///run/broker.sock":       true,
		"unix:broker.sock":              true,
		"unix-abstract:broker":          true,
		"localhost":                     true,
		"broker.internal:8443":          false,
		"dns:///broker.internal:8443":   false,
		"dns://127.0.0.1/broker:8443":   false,
		"10.0.0.1:8443":                 false,
		"localhost.evil.example:8443":   false,
		"[2001:db8::1]:8443":            false,
		"0.0.0.0:8443":                  false,
		"xds:///broker":                 false,
	}
	for target, want := range tests {
		if got := isLoopbackTarget(target); got != want {
			t.Errorf("isLoopbackTarget(%q) = %v, want %v", target, got, want)
		}
	}
}
