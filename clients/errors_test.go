package clients_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/clients/clientstest"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

func TestErrorMapping(t *testing.T) {
	type R = tokenbrokerv1.ErrorReason
	tests := []struct {
		code   codes.Code
		reason R
		want   []error // sentinels the error must match
	}{
		{codes.InvalidArgument, tokenbrokerv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, []error{clients.ErrInvalidArgument}},
		{codes.NotFound, tokenbrokerv1.ErrorReason_ERROR_REASON_CONNECTION_NOT_FOUND, []error{clients.ErrNotFound}},
		{codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_SEED, []error{clients.ErrNeedsSeed, clients.ErrFailedPrecondition}},
		{codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_REAUTH, []error{clients.ErrNeedsReauth, clients.ErrFailedPrecondition}},
		{codes.InvalidArgument, tokenbrokerv1.ErrorReason_ERROR_REASON_GENERATION_AHEAD, []error{clients.ErrGenerationAhead, clients.ErrInvalidArgument}},
		{codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_TOKEN_UNAVAILABLE, []error{clients.ErrTokenUnavailable, clients.ErrUnavailable}},
		{codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_NOT_READY, []error{clients.ErrUnavailable}},
		{codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_STORE_UNAVAILABLE, []error{clients.ErrUnavailable}},
		{codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_REFRESH_FAILED, []error{clients.ErrUnavailable}},
		{codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_REFRESH_THROTTLED, []error{clients.ErrThrottled, clients.ErrUnavailable}},
		{codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_MIN_VALIDITY_UNSATISFIABLE, []error{clients.ErrMinValidityUnsatisfiable, clients.ErrFailedPrecondition}},
		{codes.InvalidArgument, tokenbrokerv1.ErrorReason_ERROR_REASON_REQUEST_NOT_ALLOWED, []error{clients.ErrRequestNotAllowed, clients.ErrInvalidArgument}},
		{codes.Unavailable, tokenbrokerv1.ErrorReason_ERROR_REASON_UPSTREAM_ERROR, []error{clients.ErrUpstream, clients.ErrUnavailable}},
		{codes.Unauthenticated, tokenbrokerv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED, []error{clients.ErrUnauthenticated}},
		{codes.PermissionDenied, tokenbrokerv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, []error{clients.ErrPermissionDenied}},
		{codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_KEY_UNAVAILABLE, []error{clients.ErrKeyUnavailable, clients.ErrFailedPrecondition}},
		{codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_SEED_REJECTED, []error{clients.ErrSeedRejected, clients.ErrFailedPrecondition}},
		{codes.DeadlineExceeded, tokenbrokerv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED, []error{clients.ErrDeadlineExceeded, context.DeadlineExceeded}},
		{codes.Internal, tokenbrokerv1.ErrorReason_ERROR_REASON_INTERNAL, []error{clients.ErrInternal}},
	}
	if len(tests) != len(tokenbrokerv1.ErrorReason_name)-1 {
		t.Errorf("the table covers %d reasons; the proto has %d besides UNSPECIFIED", len(tests), len(tokenbrokerv1.ErrorReason_name)-1)
	}
	sentinels := []error{
		clients.ErrInvalidArgument, clients.ErrNotFound, clients.ErrFailedPrecondition, clients.ErrUnavailable,
		clients.ErrUnauthenticated, clients.ErrPermissionDenied, clients.ErrDeadlineExceeded, clients.ErrCanceled,
		clients.ErrInternal, clients.ErrNeedsSeed, clients.ErrNeedsReauth, clients.ErrGenerationAhead,
		clients.ErrTokenUnavailable, clients.ErrThrottled, clients.ErrMinValidityUnsatisfiable,
		clients.ErrRequestNotAllowed, clients.ErrUpstream, clients.ErrKeyUnavailable, clients.ErrSeedRejected,
	}

	var mu sync.Mutex
	var next error
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			return next
		}))
	// No retries: the UNAVAILABLE cases would only take longer.
	c := dial(t, srv, clients.WithDialOptions(grpc.WithDisableRetry()))

	for _, tt := range tests {
		t.Run(tt.reason.String(), func(t *testing.T) {
			mu.Lock()
			next = clientstest.Error(tt.code, tt.reason, "broker says no")
			mu.Unlock()

			for name, call := range map[string]func() error{
				"GetToken": func() error {
					_, err := c.GetToken(context.Background(), "adobe-prod", 0)
					return err
				},
				"Invalidate": func() error {
					_, err := c.Invalidate(context.Background(), "adobe-prod", 1, "401")
					return err
				},
				// The generated client goes through the same mapping.
				"raw CallAnalytics": func() error {
					_, err := c.TokenBroker().CallAnalytics(context.Background(), &tokenbrokerv1.CallAnalyticsRequest{Connection: "adobe-prod"})
					return err
				},
			} {
				err := call()
				for _, s := range sentinels {
					if want := contains(tt.want, s); errors.Is(err, s) != want {
						t.Errorf("%s: errors.Is(%v, %v) = %v, want %v", name, err, s, !want, want)
					}
				}
				for _, s := range tt.want {
					if !errors.Is(err, s) {
						t.Errorf("%s: %v does not match %v", name, err, s)
					}
				}
				if got := clients.Reason(err); got != tt.reason.String() {
					t.Errorf("%s: Reason = %q, want %q", name, got, tt.reason.String())
				}
				var e *clients.Error
				if !errors.As(err, &e) || e.Reason() != tt.reason.String() || e.Code() != tt.code {
					t.Fatalf("%s: %v is not a *clients.Error with the reason and code", name, err)
				}
				st, ok := status.FromError(err)
				if !ok || st.Code() != tt.code || st.Message() != "broker says no" || len(st.Details()) != 1 {
					t.Errorf("%s: status.FromError = %v, %v", name, st, ok)
				}
				if status.Code(err) != tt.code {
					t.Errorf("%s: status.Code = %v, want %v", name, status.Code(err), tt.code)
				}
				if !strings.Contains(err.Error(), tt.reason.String()) || !strings.Contains(err.Error(), "broker says no") {
					t.Errorf("%s: message %q lacks the reason or the broker's message", name, err)
				}
			}
		})
	}
}

func contains(errs []error, target error) bool {
	for _, e := range errs {
		if e == target {
			return true
		}
	}
	return false
}

func TestErrorMappingFallsBackOnCode(t *testing.T) {
	foreign, err := status.New(codes.PermissionDenied, "proxy says no").WithDetails(&errdetails.ErrorInfo{
		Domain: "proxy.example.com", Reason: "ERROR_REASON_NEEDS_SEED",
	})
	if err != nil {
		t.Fatal(err)
	}
	unknownReason := clientstest.Error(codes.Unavailable, tokenbrokerv1.ErrorReason(99), "from a newer broker")
	tests := []struct {
		name       string
		err        error
		want       error
		wantReason string
	}{
		{"no details", status.Error(codes.NotFound, "no such thing"), clients.ErrNotFound, ""},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), clients.ErrUnavailable, ""},
		{"unknown", status.Error(codes.Unknown, "panic"), clients.ErrInternal, ""},
		{"other domain", foreign.Err(), clients.ErrPermissionDenied, ""},
		{"unknown reason", unknownReason, clients.ErrUnavailable, "99"},
	}
	var mu sync.Mutex
	var next error
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			return next
		}))
	c := dial(t, srv, clients.WithDialOptions(grpc.WithDisableRetry()))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			next = tt.err
			mu.Unlock()
			_, err := c.GetToken(context.Background(), "adobe-prod", 0)
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v does not match %v", err, tt.want)
			}
			if errors.Is(err, clients.ErrNeedsSeed) {
				t.Errorf("error %v matches ErrNeedsSeed", err)
			}
			if got := clients.Reason(err); got != tt.wantReason {
				t.Errorf("Reason = %q, want %q", got, tt.wantReason)
			}
			if status.Code(err) != status.Code(tt.err) {
				t.Errorf("status.Code = %v, want %v", status.Code(err), status.Code(tt.err))
			}
		})
	}
}

func TestCallerCanceled(t *testing.T) {
	srv := startBroker(t, clientstest.WithConnection("adobe-prod", ""),
		interceptor(func(ctx context.Context, _ string) error {
			<-ctx.Done()
			return ctx.Err()
		}))
	c := dial(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.GetToken(ctx, "adobe-prod", 0)
	if !errors.Is(err, clients.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("GetToken with a canceled context = %v, want ErrCanceled and context.Canceled", err)
	}
}

func TestReasonOfPlainErrors(t *testing.T) {
	if r := clients.Reason(nil); r != "" {
		t.Errorf("Reason(nil) = %q", r)
	}
	if r := clients.Reason(errors.New("plain")); r != "" {
		t.Errorf("Reason(plain) = %q", r)
	}
	// A raw status error, as from a grpc.ClientConn of one's own.
	err := clientstest.Error(codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_SEED, "seed me")
	if r := clients.Reason(err); r != "ERROR_REASON_NEEDS_SEED" {
		t.Errorf("Reason(status error) = %q", r)
	}
}
