package server

import (
	"context"
	"errors"
	"strings"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/apiproxy"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every error the broker returns.
const Domain = "tokenbroker.v1"

// errorTable maps domain errors to a code and a reason, first match wins.
var errorTable = []struct {
	err    error
	code   codes.Code
	reason pb.ErrorReason
}{
	{broker.ErrInvalidArgument, codes.InvalidArgument, pb.ErrorReason_ERROR_REASON_INVALID_ARGUMENT},
	{broker.ErrNotFound, codes.NotFound, pb.ErrorReason_ERROR_REASON_CONNECTION_NOT_FOUND},
	{broker.ErrNeedsSeed, codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_NEEDS_SEED},
	{broker.ErrNeedsReauth, codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_NEEDS_REAUTH},
	{broker.ErrGenerationAhead, codes.InvalidArgument, pb.ErrorReason_ERROR_REASON_GENERATION_AHEAD},
	{broker.ErrKeyUnavailable, codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_KEY_UNAVAILABLE},
	{broker.ErrSeedRejected, codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_SEED_REJECTED},
	{broker.ErrMinValidity, codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_MIN_VALIDITY_UNSATISFIABLE},
	{broker.ErrTokenUnavailable, codes.Unavailable, pb.ErrorReason_ERROR_REASON_TOKEN_UNAVAILABLE},
	{broker.ErrNotReady, codes.Unavailable, pb.ErrorReason_ERROR_REASON_NOT_READY},
	{broker.ErrThrottled, codes.Unavailable, pb.ErrorReason_ERROR_REASON_REFRESH_THROTTLED},
	{broker.ErrRefreshFailed, codes.Unavailable, pb.ErrorReason_ERROR_REASON_REFRESH_FAILED},
	{broker.ErrStoreUnavailable, codes.Unavailable, pb.ErrorReason_ERROR_REASON_STORE_UNAVAILABLE},
	{broker.ErrDeadline, codes.DeadlineExceeded, pb.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED},
	{apiproxy.ErrNotAllowed, codes.InvalidArgument, pb.ErrorReason_ERROR_REASON_REQUEST_NOT_ALLOWED},
	{apiproxy.ErrUpstream, codes.Unavailable, pb.ErrorReason_ERROR_REASON_UPSTREAM_ERROR},
	{apiproxy.ErrBadTarget, codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_INTERNAL},
	{context.DeadlineExceeded, codes.DeadlineExceeded, pb.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED},
	{context.Canceled, codes.Canceled, pb.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED},
}

// toStatus maps a domain error to a gRPC error. Messages of domain errors
// never carry secrets; anything unknown becomes a bare Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return newStatus(e.code, e.reason, err.Error(), nil)
		}
	}
	return newStatus(codes.Internal, pb.ErrorReason_ERROR_REASON_INTERNAL, "internal error", nil)
}

// newStatus builds a status with an ErrorInfo detail.
func newStatus(code codes.Code, reason pb.ErrorReason, msg string, meta map[string]string) error {
	st := status.New(code, msg)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason.String(), Domain: Domain, Metadata: meta}); err == nil {
		st = ds
	}
	return st.Err()
}

// invalid is an INVALID_ARGUMENT naming the field.
func invalid(field, msg string) error {
	st := status.New(codes.InvalidArgument, field+": "+msg)
	ds, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: pb.ErrorReason_ERROR_REASON_INVALID_ARGUMENT.String(), Domain: Domain, Metadata: map[string]string{"field": field}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}},
	)
	if err == nil {
		st = ds
	}
	return st.Err()
}

// checkConnection validates a connection name field.
func checkConnection(name string) error {
	switch {
	case name == "":
		return invalid("connection", "is required")
	case len(name) > 63 || !broker.ValidName(name):
		return invalid("connection", "must be 1-63 lower-case letters, digits, '.', '_' or '-'")
	}
	return nil
}

// checkText validates a free-text field.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, "is too long")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' }) {
		return invalid(field, "must not contain control characters")
	}
	return nil
}
