package cluster

import (
	"net/http/httptest"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/fakeadobe"
)

// Adobe is the strict fake of Adobe IMS, served from the test process on
// loopback so that the test reads its Stats and turns its knobs while the
// replica processes call it.
type Adobe struct {
	*fakeadobe.Server
	URL string
}

// StartAdobe starts the fake until the test ends.
func StartAdobe(t testing.TB, opts fakeadobe.Options) *Adobe {
	t.Helper()
	fake := fakeadobe.New(opts)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return &Adobe{Server: fake, URL: srv.URL}
}

// Connection is a refresh_token connection of the fake, as replicas
// configure it.
func (a *Adobe) Connection(name string) broker.ConnectionConfig {
	return broker.ConnectionConfig{
		Name: name, Provider: broker.ProviderAdobe, Grant: broker.GrantRefreshToken, IMSURL: a.URL,
		ClientID: a.ClientID(), ClientSecret: a.ClientSecret(), APIBaseURL: a.URL,
		Scopes: []string{"openid", "AdobeID", "offline_access", "additional_info.projectedProductContext"},
	}
}

// Refreshes is how many refresh_token calls the fake has seen since the
// last ResetStats.
func (a *Adobe) Refreshes() int { return a.Stats().TokenCalls["refresh_token"] }

// InvalidGrants is how many invalid_grant answers the fake gave since the
// last ResetStats: each is a refresh token used twice (or lost).
func (a *Adobe) InvalidGrants() int { return a.Stats().TokenErrors["invalid_grant"] }
