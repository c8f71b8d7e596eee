package clients

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that every
// error of the broker carries.
const ErrorDomain = "tokenbroker.v1"

// Sentinel errors. An error of a broker RPC matches with errors.Is the
// sentinel of its reason (ERROR_REASON_*) and the sentinel of its gRPC code:
// an ERROR_REASON_REFRESH_THROTTLED error is both ErrThrottled and
// ErrUnavailable. Every UNAVAILABLE error is ErrUnavailable: worth trying
// again later. Without an ErrorInfo detail (an error from a proxy, or from the
// transport) the gRPC code alone decides.
var (
	// Code level.
	ErrInvalidArgument    = errors.New("tokenbroker: invalid argument")
	ErrNotFound           = errors.New("tokenbroker: connection not found")
	ErrFailedPrecondition = errors.New("tokenbroker: failed precondition")
	ErrUnavailable        = errors.New("tokenbroker: unavailable")
	ErrUnauthenticated    = errors.New("tokenbroker: unauthenticated")
	ErrPermissionDenied   = errors.New("tokenbroker: permission denied")
	ErrDeadlineExceeded   = errors.New("tokenbroker: deadline exceeded")
	ErrCanceled           = errors.New("tokenbroker: canceled")
	ErrInternal           = errors.New("tokenbroker: internal error")

	// Reason level.
	ErrNeedsSeed                = errors.New("tokenbroker: connection needs a seed")
	ErrNeedsReauth              = errors.New("tokenbroker: connection needs a new login")
	ErrGenerationAhead          = errors.New("tokenbroker: reported generation is ahead of the broker")
	ErrTokenUnavailable         = errors.New("tokenbroker: no valid token now")
	ErrThrottled                = errors.New("tokenbroker: refreshes throttled")
	ErrMinValidityUnsatisfiable = errors.New("tokenbroker: min_validity exceeds the token lifetime")
	ErrRequestNotAllowed        = errors.New("tokenbroker: request not allowed")
	ErrUpstream                 = errors.New("tokenbroker: upstream error")
	ErrKeyUnavailable           = errors.New("tokenbroker: sealing key unavailable")
	ErrSeedRejected             = errors.New("tokenbroker: seed rejected")
)

var codeErrors = map[codes.Code]error{
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.NotFound:           ErrNotFound,
	codes.FailedPrecondition: ErrFailedPrecondition,
	codes.Unavailable:        ErrUnavailable,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.DeadlineExceeded:   ErrDeadlineExceeded,
	codes.Canceled:           ErrCanceled,
	codes.Internal:           ErrInternal,
	codes.Unknown:            ErrInternal,
	codes.DataLoss:           ErrInternal,
}

var reasonErrors = map[tokenbrokerv1.ErrorReason]error{
	tokenbrokerv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT:           ErrInvalidArgument,
	tokenbrokerv1.ErrorReason_ERROR_REASON_CONNECTION_NOT_FOUND:       ErrNotFound,
	tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_SEED:                 ErrNeedsSeed,
	tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_REAUTH:               ErrNeedsReauth,
	tokenbrokerv1.ErrorReason_ERROR_REASON_GENERATION_AHEAD:           ErrGenerationAhead,
	tokenbrokerv1.ErrorReason_ERROR_REASON_TOKEN_UNAVAILABLE:          ErrTokenUnavailable,
	tokenbrokerv1.ErrorReason_ERROR_REASON_NOT_READY:                  ErrUnavailable,
	tokenbrokerv1.ErrorReason_ERROR_REASON_STORE_UNAVAILABLE:          ErrUnavailable,
	tokenbrokerv1.ErrorReason_ERROR_REASON_REFRESH_FAILED:             ErrUnavailable,
	tokenbrokerv1.ErrorReason_ERROR_REASON_REFRESH_THROTTLED:          ErrThrottled,
	tokenbrokerv1.ErrorReason_ERROR_REASON_MIN_VALIDITY_UNSATISFIABLE: ErrMinValidityUnsatisfiable,
	tokenbrokerv1.ErrorReason_ERROR_REASON_REQUEST_NOT_ALLOWED:        ErrRequestNotAllowed,
	tokenbrokerv1.ErrorReason_ERROR_REASON_UPSTREAM_ERROR:             ErrUpstream,
	tokenbrokerv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED:            ErrUnauthenticated,
	tokenbrokerv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED:          ErrPermissionDenied,
	tokenbrokerv1.ErrorReason_ERROR_REASON_KEY_UNAVAILABLE:            ErrKeyUnavailable,
	tokenbrokerv1.ErrorReason_ERROR_REASON_SEED_REJECTED:              ErrSeedRejected,
	tokenbrokerv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED:          ErrDeadlineExceeded,
	tokenbrokerv1.ErrorReason_ERROR_REASON_INTERNAL:                   ErrInternal,
}

// Error is an error of a broker RPC. status.FromError and status.Code see
// its gRPC status through GRPCStatus.
type Error struct {
	st     *status.Status
	reason string
	errs   []error
}

// Error returns the code, the reason and the broker's message.
func (e *Error) Error() string {
	if e.reason == "" {
		return fmt.Sprintf("tokenbroker: %s: %s", e.st.Code(), e.st.Message())
	}
	return fmt.Sprintf("tokenbroker: %s (%s): %s", e.st.Code(), e.reason, e.st.Message())
}

// Reason returns the name of the ErrorReason that the broker gave, such as
// "ERROR_REASON_NEEDS_SEED", or "" if the error carried none.
func (e *Error) Reason() string { return e.reason }

// Code returns the gRPC code.
func (e *Error) Code() codes.Code { return e.st.Code() }

// GRPCStatus returns the gRPC status, with its details.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Unwrap returns the sentinels the error matches. A CANCELED or
// DEADLINE_EXCEEDED error also matches context.Canceled or
// context.DeadlineExceeded.
func (e *Error) Unwrap() []error { return e.errs }

// mapError turns a gRPC status error into an *Error that matches the sentinels
// of its ErrorInfo reason and of its code. Other errors, and errors already
// mapped, are returned as they are.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	if e := (*Error)(nil); errors.As(err, &e) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{st: st, reason: reasonOf(st)}
	add := func(s error) {
		for _, have := range e.errs {
			if have == s {
				return
			}
		}
		e.errs = append(e.errs, s)
	}
	if s, ok := reasonErrors[tokenbrokerv1.ErrorReason(tokenbrokerv1.ErrorReason_value[e.reason])]; ok && e.reason != "" {
		add(s)
	}
	if s, ok := codeErrors[st.Code()]; ok {
		add(s)
	}
	switch st.Code() {
	case codes.Canceled:
		add(context.Canceled)
	case codes.DeadlineExceeded:
		add(context.DeadlineExceeded)
	}
	return e
}

// reasonOf returns the reason of the status's ErrorInfo of ErrorDomain, or "".
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// Reason returns the ErrorReason name that the broker gave for err, such as
// "ERROR_REASON_NEEDS_REAUTH", or "" if err carries none. It works on errors of
// this package and on plain gRPC status errors.
func Reason(err error) string {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e.reason
	}
	if st, ok := status.FromError(err); ok {
		return reasonOf(st)
	}
	return ""
}

// mapErrorInterceptor maps the errors of every RPC made through a Client,
// after gRPC's own retries.
func mapErrorInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return mapError(invoker(ctx, method, req, reply, cc, opts...))
}
