package broker

import (
	"github.com/tokenbroker/tokenbroker/internal/fingerprint"
	"time"
)

// State is the health of a connection's credentials.
type State string

// The states of a connection.
const (
	StateOK          State = "OK"
	StateNeedsSeed   State = "NEEDS_SEED"
	StateNeedsReauth State = "NEEDS_REAUTH"
	StateDegraded    State = "DEGRADED"
)

// Cause says why a token was obtained.
type Cause string

// Causes of a refresh.
const (
	CauseSchedule Cause = "schedule" // refresh ahead of expiry
	CauseDemand   Cause = "demand"   // Invalidate or min_validity
	CauseAdmin    Cause = "admin"    // RefreshNow
	CauseSeed     Cause = "seed"     // SeedToken
	CauseRecovery Cause = "recovery" // resolving a refresh cut off by a crash
)

// Record is what the store keeps of one connection. Access and refresh tokens
// are sealed by the store; everything else is plain.
type Record struct {
	Generation   uint64    `json:"generation"`
	AccessToken  string    `json:"-"`
	RefreshToken string    `json:"-"`
	TokenType    string    `json:"token_type,omitempty"`
	ObtainedAt   time.Time `json:"obtained_at,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	// LoginAt is when the chain of refresh tokens was seeded.
	LoginAt time.Time `json:"login_at,omitzero"`

	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"` // why the state is not OK; never a secret
	// LastResult is "ok" or the error code of the last attempt.
	LastResult    string    `json:"last_result,omitempty"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	LastRefreshAt time.Time `json:"last_refresh_at,omitzero"`
	LastCause     Cause     `json:"last_cause,omitempty"`
	// DemandStreak counts refreshes on demand that each came within the
	// minimum interval of the one before: the sign of a refresh loop.
	DemandStreak int `json:"demand_streak,omitempty"`
	// Failures counts failed attempts since the last success.
	Failures int `json:"failures,omitempty"`
	// RetryAt is when the leader may try again after a failure.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Claim is set while a replica is calling the token endpoint.
	Claim *Claim `json:"claim,omitempty"`
}

// Claim marks a call to the token endpoint in flight. Nobody else calls it
// for the connection until the claim is resolved or its deadline has passed.
type Claim struct {
	Holder   string    `json:"holder"`
	Deadline time.Time `json:"deadline"`
	Cause    Cause     `json:"cause"`
}

// Versioned is a record with the store revision it was read at.
type Versioned struct {
	Record Record
	// Revision is the record's modification revision; 0 when it does not exist.
	Revision int64
	// Unreadable is set when the record's secrets did not open (for example, a
	// key this replica lacks); Record then carries no tokens.
	Unreadable string
}

// Valid reports whether the record holds an access token that is still valid
// at now with margin to spare.
func (r *Record) Valid(now time.Time, margin time.Duration) bool {
	return r.AccessToken != "" && now.Add(margin).Before(r.ExpiresAt)
}

// Fingerprint is a short SHA-256 fingerprint of a secret, safe for logs.
func Fingerprint(secret string) string { return fingerprint.Of(secret) }
