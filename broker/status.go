package broker

import (
	"fmt"
	"time"
)

// Status is what operators see of a connection. It never holds a token.
type Status struct {
	Name, Provider, Grant string
	State                 State
	Generation            uint64
	ExpiresAt             time.Time
	LastRefreshAt         time.Time
	LastResult            string
	Reason                string
	NextRefreshAt         time.Time
	LoginAt               time.Time
	RefreshTokenExpiresAt time.Time
	Leader                string
	Refreshes             uint64
	Invalidations         uint64
	APIBaseURL            string
	Fingerprint           string
}

// Status returns the state of one connection as this replica's cache sees it.
func (b *Broker) Status(name string) (Status, error) {
	c, err := b.conn(name)
	if err != nil {
		return Status{}, err
	}
	if !b.isReady() {
		return Status{}, ErrNotReady
	}
	return b.status(c, b.clock.Now()), nil
}

// Statuses returns the state of every connection, sorted by name.
func (b *Broker) Statuses() ([]Status, error) {
	if !b.isReady() {
		return nil, ErrNotReady
	}
	now := b.clock.Now()
	out := make([]Status, 0, len(b.names))
	for _, name := range b.names {
		out = append(out, b.status(b.conns[name], now))
	}
	return out, nil
}

func (b *Broker) status(c *conn, now time.Time) Status {
	v := c.cur.Load()
	rec := &v.Record
	s := Status{
		Name: c.cfg.Name, Provider: c.cfg.Provider, Grant: c.cfg.Grant,
		State: rec.State, Generation: rec.Generation, ExpiresAt: rec.ExpiresAt,
		LastRefreshAt: rec.LastRefreshAt, LastResult: rec.LastResult, Reason: rec.Reason,
		LoginAt: rec.LoginAt, Leader: b.Leader(), Refreshes: c.refreshes.Load(),
		Invalidations: c.invalidations.Load(), APIBaseURL: c.cfg.APIBaseURL,
		Fingerprint: Fingerprint(rec.AccessToken),
	}
	switch {
	case v.Unreadable != "":
		s.State, s.Reason = StateDegraded, v.Unreadable
	case v.Revision == 0 && c.cfg.Grant == GrantRefreshToken:
		s.State, s.Reason = StateNeedsSeed, "no credentials yet: run tokenbroker login or SeedToken"
	case v.Revision == 0:
		s.State, s.Reason = StateDegraded, "the first token has not been fetched yet"
	case rec.State == StateOK && !rec.Valid(now, b.timing.ExpiryMargin):
		s.State, s.Reason = StateDegraded, "the token expired and has not been refreshed yet"
	}
	if rec.AccessToken != "" && s.State != StateNeedsReauth {
		s.NextRefreshAt = laterOf(refreshTime(c.cfg.Name, rec, b.timing), rec.RetryAt)
	}
	if c.cfg.RefreshTokenLifetime > 0 && !rec.LoginAt.IsZero() {
		s.RefreshTokenExpiresAt = rec.LoginAt.Add(c.cfg.RefreshTokenLifetime)
		if left := s.RefreshTokenExpiresAt.Sub(now); left < c.cfg.RefreshTokenWarning && s.Reason == "" {
			s.Reason = fmt.Sprintf("the refresh token dies at %s (%s left): log in again before then",
				s.RefreshTokenExpiresAt.UTC().Format(time.RFC3339), left.Round(time.Minute))
		}
	}
	return s
}
