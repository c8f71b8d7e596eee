package broker

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Provider kinds.
const (
	ProviderAdobe  = "adobe"
	ProviderOAuth2 = "oauth2"
)

// Grant types.
const (
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Adobe defaults.
const (
	AdobeIMSURL               = "https://ims-na1.adobelogin.com"
	AdobeAnalyticsURL         = "https://analytics.adobe.io"
	AdobeRefreshTokenLifetime = 14 * 24 * time.Hour
)

// ConnectionConfig is one set of OAuth credentials for one upstream API.
type ConnectionConfig struct {
	Name     string
	Provider string // ProviderAdobe or ProviderOAuth2
	Grant    string // GrantRefreshToken or GrantClientCredentials

	// IMSURL is Adobe's IMS base URL (provider adobe); TokenURL and AuthURL
	// default from it.
	IMSURL   string
	TokenURL string
	AuthURL  string

	ClientID     string
	ClientSecret string // resolved from a file or the environment by cmd
	AuthStyle    string // "auto", "basic" or "form"
	Scopes       []string

	// APIBaseURL is where CallAnalytics sends requests.
	APIBaseURL string
	// APIKey is sent as x-api-key; Adobe: the client id.
	APIKey string
	// GlobalCompanyID, when set, is sent as x-proxy-global-company-id.
	GlobalCompanyID string
	// Headers are fixed extra headers for CallAnalytics.
	Headers map[string]string
	// RefreshTokenLifetime is how long a refresh token chain lives after the
	// login, whatever the rotation (Adobe: 14 days); 0 means unknown.
	RefreshTokenLifetime time.Duration
	// RefreshTokenWarning: warn when the chain has less than this left.
	RefreshTokenWarning time.Duration
}

// Timing holds the refresh policy. Zero fields take the defaults of DefaultTiming.
type Timing struct {
	// RefreshAt is the fraction of a token's lifetime after which the leader
	// refreshes it; Jitter is the fraction of the lifetime by which it refreshes
	// earlier at random, so that many connections do not refresh at once.
	RefreshAt float64
	Jitter    float64
	// ExpiryMargin: a token that expires within this is not served.
	ExpiryMargin time.Duration
	// MinDemandInterval: once two refreshes on demand came within this of the
	// token before them, further ones wait for it (no refresh loops).
	MinDemandInterval time.Duration
	// BackoffMin and BackoffMax bound the wait after a failed refresh.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// TokenCallTimeout bounds one call to the token endpoint.
	TokenCallTimeout time.Duration
	// ClaimTTL is how long another replica waits for a claimed refresh before
	// it treats the refresh as cut off. It must exceed TokenCallTimeout.
	ClaimTTL time.Duration
	// Wait bounds how long Invalidate and GetToken wait for a new token when
	// the caller set no deadline.
	Wait time.Duration
	// SessionTTL is the etcd lease TTL of the replica's session: a dead
	// leader's successor takes over within it.
	SessionTTL time.Duration
}

// DefaultTiming is the refresh policy unless configured.
var DefaultTiming = Timing{
	RefreshAt:         0.75,
	Jitter:            0.1,
	ExpiryMargin:      30 * time.Second,
	MinDemandInterval: 30 * time.Second,
	BackoffMin:        time.Second,
	BackoffMax:        5 * time.Minute,
	TokenCallTimeout:  30 * time.Second,
	ClaimTTL:          45 * time.Second,
	Wait:              30 * time.Second,
	SessionTTL:        5 * time.Second,
}

// WithDefaults fills zero fields from DefaultTiming.
func (t Timing) WithDefaults() Timing {
	d := DefaultTiming
	if t.RefreshAt != 0 {
		d.RefreshAt = t.RefreshAt
	}
	if t.Jitter != 0 {
		d.Jitter = t.Jitter
	}
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	set(&d.ExpiryMargin, t.ExpiryMargin)
	set(&d.MinDemandInterval, t.MinDemandInterval)
	set(&d.BackoffMin, t.BackoffMin)
	set(&d.BackoffMax, t.BackoffMax)
	set(&d.TokenCallTimeout, t.TokenCallTimeout)
	set(&d.ClaimTTL, t.ClaimTTL)
	set(&d.Wait, t.Wait)
	set(&d.SessionTTL, t.SessionTTL)
	return d
}

// Validate returns every problem of t, each with its field path under prefix.
func (t Timing) Validate(prefix string) []error {
	var errs []error
	bad := func(field, msg string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, field, fmt.Sprintf(msg, args...)))
	}
	if t.RefreshAt < 0.1 || t.RefreshAt > 0.95 {
		bad("refresh_at", "%v is outside 0.1..0.95", t.RefreshAt)
	}
	if t.Jitter < 0 || t.Jitter >= t.RefreshAt {
		bad("jitter", "%v must be at least 0 and below refresh_at", t.Jitter)
	}
	for name, d := range map[string]time.Duration{
		"expiry_margin": t.ExpiryMargin, "min_demand_interval": t.MinDemandInterval,
		"backoff_min": t.BackoffMin, "backoff_max": t.BackoffMax,
		"token_call_timeout": t.TokenCallTimeout, "claim_ttl": t.ClaimTTL, "wait": t.Wait,
	} {
		if d < 0 {
			bad(name, "must not be negative")
		}
	}
	if t.BackoffMax < t.BackoffMin {
		bad("backoff_max", "%v is below backoff_min %v", t.BackoffMax, t.BackoffMin)
	}
	if t.ClaimTTL <= t.TokenCallTimeout {
		bad("claim_ttl", "%v must exceed token_call_timeout %v", t.ClaimTTL, t.TokenCallTimeout)
	}
	if t.SessionTTL < time.Second {
		bad("session_ttl", "%v is under one second (etcd leases count whole seconds)", t.SessionTTL)
	}
	return errs
}

var connectionName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidName reports whether s can name a connection.
func ValidName(s string) bool { return connectionName.MatchString(s) }

// WithDefaults fills what the provider preset implies.
func (c ConnectionConfig) WithDefaults() ConnectionConfig {
	if c.Provider == "" {
		c.Provider = ProviderAdobe
	}
	if c.Grant == "" {
		c.Grant = GrantRefreshToken
	}
	if c.AuthStyle == "" {
		c.AuthStyle = "auto"
	}
	if c.Provider == ProviderAdobe {
		if c.IMSURL == "" {
			c.IMSURL = AdobeIMSURL
		}
		base := strings.TrimRight(c.IMSURL, "/")
		if c.TokenURL == "" {
			c.TokenURL = base + "/ims/token/v3"
		}
		if c.AuthURL == "" {
			c.AuthURL = base + "/ims/authorize/v2"
		}
		if c.APIBaseURL == "" {
			c.APIBaseURL = AdobeAnalyticsURL
		}
		if c.APIKey == "" {
			c.APIKey = c.ClientID
		}
		if c.RefreshTokenLifetime == 0 && c.Grant == GrantRefreshToken {
			c.RefreshTokenLifetime = AdobeRefreshTokenLifetime
		}
	}
	if c.RefreshTokenWarning == 0 && c.RefreshTokenLifetime > 0 {
		c.RefreshTokenWarning = c.RefreshTokenLifetime / 7
	}
	return c
}

// Validate returns every problem of c, each with its field path under prefix.
// Call it on c.WithDefaults().
func (c ConnectionConfig) Validate(prefix string) []error {
	var errs []error
	bad := func(field, msg string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, field, fmt.Sprintf(msg, args...)))
	}
	if !ValidName(c.Name) {
		bad("name", "%q must be 1-63 lower-case letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.Provider != ProviderAdobe && c.Provider != ProviderOAuth2 {
		bad("provider", "%q is not one of adobe, oauth2", c.Provider)
	}
	if c.Grant != GrantRefreshToken && c.Grant != GrantClientCredentials {
		bad("grant", "%q is not one of refresh_token, client_credentials", c.Grant)
	}
	checkURL := func(field, u string, required bool) {
		if u == "" {
			if required {
				bad(field, "is required")
			}
			return
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil || p.RawQuery != "" || p.Fragment != "" {
			bad(field, "is not an http(s) URL without user info, query or fragment")
		}
	}
	checkURL("token_url", c.TokenURL, true)
	checkURL("auth_url", c.AuthURL, false)
	checkURL("api_base_url", c.APIBaseURL, false)
	if c.ClientID == "" {
		bad("client_id", "is required")
	}
	if c.ClientSecret == "" && c.Grant == GrantClientCredentials {
		bad("client_secret", "is required for client_credentials")
	}
	if !slices.Contains([]string{"auto", "basic", "form"}, c.AuthStyle) {
		bad("auth_style", "%q is not one of auto, basic, form", c.AuthStyle)
	}
	for h := range c.Headers {
		if strings.EqualFold(h, "authorization") || strings.EqualFold(h, "host") || strings.EqualFold(h, "x-api-key") {
			bad("headers."+h, "is set by the broker")
		}
	}
	if c.RefreshTokenLifetime < 0 {
		bad("refresh_token_lifetime", "must not be negative")
	}
	return errs
}

// Config is what the broker needs to run.
type Config struct {
	Connections []ConnectionConfig
	Timing      Timing
}

// Validate returns every problem of c joined in one error, or nil.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, conn := range c.Connections {
		prefix := fmt.Sprintf("connections[%d].", i)
		errs = append(errs, conn.WithDefaults().Validate(prefix)...)
		if j, dup := seen[conn.Name]; dup {
			errs = append(errs, fmt.Errorf("%sname: %q is also connections[%d]", prefix, conn.Name, j))
		}
		seen[conn.Name] = i
	}
	errs = append(errs, c.Timing.WithDefaults().Validate("timing.")...)
	return errors.Join(errs...)
}
