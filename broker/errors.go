package broker

import "errors"

// Errors of the domain. Package server maps them to gRPC codes in one table;
// wrapped errors add detail that never carries a token or secret.
var (
	ErrNotFound             = errors.New("no such connection")
	ErrNeedsSeed            = errors.New("connection was never seeded")
	ErrNeedsReauth          = errors.New("credentials were rejected for good: log in and seed again")
	ErrGenerationAhead      = errors.New("generation is greater than the current one")
	ErrTokenUnavailable     = errors.New("no valid token")
	ErrNotReady             = errors.New("replica has not loaded the tokens yet")
	ErrStoreUnavailable     = errors.New("store unavailable")
	ErrRefreshFailed        = errors.New("refresh failed")
	ErrThrottled            = errors.New("refresh throttled")
	ErrMinValidity          = errors.New("min_validity is longer than a new token lives")
	ErrKeyUnavailable       = errors.New("token record is sealed with a key this replica lacks")
	ErrSeedRejected         = errors.New("seed rejected")
	ErrInvalidArgument      = errors.New("invalid argument")
	ErrDeadline             = errors.New("deadline passed before a new token arrived")
	ErrConflict             = errors.New("record changed since it was read")
	ErrFenced               = errors.New("write fenced off: this replica no longer leads")
	ErrCompacted            = errors.New("watch revision compacted")
	errSuperseded           = errors.New("a newer generation was stored meanwhile")
	errClaimedBySomeoneElse = errors.New("a refresh is in flight elsewhere")
)
