package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Token is a normalised token endpoint response.
type Token struct {
	AccessToken string
	// TokenType is the server's token_type with the RFC 6750 spelling
	// ("bearer" becomes "Bearer"); "Bearer" when the server sent none.
	TokenType string
	// RefreshToken is the refresh token to use next time. After Refresh it is
	// the new one if the server rotated it, else the one passed in. After
	// Exchange it is whatever the server issued (empty if none). After
	// ClientCredentials it is always empty.
	RefreshToken string
	// Rotated is set by Refresh when the server returned a refresh token
	// different from the one passed in: the old one must be considered
	// revoked and the new one stored before anything else.
	Rotated bool
	// ExpiresIn is the server's expires_in in the unit the endpoint uses
	// (seconds, or milliseconds with Config.ExpiresInMillis), or
	// Config.DefaultExpiresIn when ExpiresInDefaulted.
	ExpiresIn time.Duration
	// ExpiresInDefaulted is true when the response had no usable expires_in.
	ExpiresInDefaulted bool
	// Expiry is Config.Now() when the request was sent plus ExpiresIn. The
	// server's clock (its Date header) is never consulted.
	Expiry time.Time
	// Scope is the scope the server says it granted; empty if it did not say
	// (RFC 6749 section 5.1: then it is the scope requested).
	Scope string
}

// Client obtains tokens from one token endpoint for one client registration.
// It is safe for concurrent use, and holds no tokens.
type Client struct {
	cfg  Config
	http *http.Client
	now  func() time.Time

	// learned is the oauth2.AuthStyle that auto-detection found to work, 0
	// until then.
	learned atomic.Int32
}

// New validates cfg and returns a Client for it.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("provider config: %w", err)
	}
	cfg.Scopes = append([]string(nil), cfg.Scopes...)
	if cfg.AuthStyle == "" {
		cfg.AuthStyle = AuthStyleAuto
	}
	if cfg.DefaultExpiresIn == 0 {
		cfg.DefaultExpiresIn = DefaultExpiresIn
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient, now: cfg.Now}
	if c.http == nil {
		c.http = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Refresh redeems refreshToken (grant_type=refresh_token). No scope is sent,
// so the server keeps the scope it granted. If the response carries no
// refresh_token, the returned Token keeps refreshToken.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	if refreshToken == "" {
		return Token{}, &Error{Kind: Permanent, Code: "no_refresh_token", Description: "no refresh token to redeem"}
	}
	sec := newSecrets(c.cfg.ClientID, c.cfg.ClientSecret, refreshToken)
	tok, err := c.retrieve(ctx, sec, func(ctx context.Context, style oauth2.AuthStyle) (*oauth2.Token, error) {
		// An empty access token is never Valid, so the TokenSource refreshes
		// at once, with x/oauth2's handling of an absent refresh_token.
		return c.oauth2Config(style).TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	})
	if err != nil {
		return Token{}, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	tok.Rotated = tok.RefreshToken != refreshToken
	return tok, nil
}

// ClientCredentials obtains a token for the client itself
// (grant_type=client_credentials) with the configured scopes. A refresh token
// in the response is dropped: this grant does not use one.
func (c *Client) ClientCredentials(ctx context.Context) (Token, error) {
	sec := newSecrets(c.cfg.ClientID, c.cfg.ClientSecret)
	tok, err := c.retrieve(ctx, sec, func(ctx context.Context, style oauth2.AuthStyle) (*oauth2.Token, error) {
		cc := &clientcredentials.Config{
			ClientID:     c.cfg.ClientID,
			ClientSecret: c.cfg.ClientSecret,
			TokenURL:     c.cfg.TokenURL,
			Scopes:       c.cfg.Scopes,
			AuthStyle:    style,
		}
		return cc.Token(ctx)
	})
	tok.RefreshToken = ""
	return tok, err
}

// Exchange redeems an authorization code (grant_type=authorization_code),
// sending codeVerifier as the PKCE code_verifier and redirectURI as
// redirect_uri when they are not empty.
func (c *Client) Exchange(ctx context.Context, code, codeVerifier, redirectURI string) (Token, error) {
	if code == "" {
		return Token{}, &Error{Kind: Permanent, Code: "no_code", Description: "no authorization code to redeem"}
	}
	var opts []oauth2.AuthCodeOption
	if codeVerifier != "" {
		opts = append(opts, oauth2.VerifierOption(codeVerifier))
	}
	if redirectURI != "" {
		opts = append(opts, oauth2.SetAuthURLParam("redirect_uri", redirectURI))
	}
	sec := newSecrets(c.cfg.ClientID, c.cfg.ClientSecret, code, codeVerifier)
	return c.retrieve(ctx, sec, func(ctx context.Context, style oauth2.AuthStyle) (*oauth2.Token, error) {
		return c.oauth2Config(style).Exchange(ctx, code, opts...)
	})
}

// AuthCodeURL returns the authorization endpoint URL that starts a login:
// response_type=code, client_id, the configured scopes, state, redirect_uri
// (if not empty) and the PKCE codeChallenge with method S256 (if not empty;
// see [Challenge]). It returns "" when the Config has no AuthURL.
func (c *Client) AuthCodeURL(state, codeChallenge, redirectURI string) string {
	if c.cfg.AuthURL == "" {
		return ""
	}
	var opts []oauth2.AuthCodeOption
	if codeChallenge != "" {
		opts = append(opts,
			oauth2.SetAuthURLParam("code_challenge", codeChallenge),
			oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	}
	if redirectURI != "" {
		opts = append(opts, oauth2.SetAuthURLParam("redirect_uri", redirectURI))
	}
	return c.oauth2Config(oauth2.AuthStyleAutoDetect).AuthCodeURL(state, opts...)
}

// NewVerifier returns a fresh PKCE code verifier (RFC 7636, 32 random octets).
func NewVerifier() string { return oauth2.GenerateVerifier() }

// Challenge returns the S256 PKCE code challenge for verifier.
func Challenge(verifier string) string { return oauth2.S256ChallengeFromVerifier(verifier) }

func (c *Client) oauth2Config(style oauth2.AuthStyle) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   c.cfg.AuthURL,
			TokenURL:  c.cfg.TokenURL,
			AuthStyle: style,
		},
		Scopes: c.cfg.Scopes,
	}
}

// styles returns the auth styles to try, in order. x/oauth2's own
// auto-detection is not used: it resends the request after any failure,
// including a timeout or a 5xx, which for a rotating refresh token can turn
// one lost response into an invalid_grant.
func (c *Client) styles() []oauth2.AuthStyle {
	switch c.cfg.AuthStyle {
	case AuthStyleBasic:
		return []oauth2.AuthStyle{oauth2.AuthStyleInHeader}
	case AuthStyleForm:
		return []oauth2.AuthStyle{oauth2.AuthStyleInParams}
	}
	if s := oauth2.AuthStyle(c.learned.Load()); s != oauth2.AuthStyleAutoDetect {
		return []oauth2.AuthStyle{s}
	}
	return []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams}
}

type fetchFunc func(ctx context.Context, style oauth2.AuthStyle) (*oauth2.Token, error)

// retrieve runs fetch once per auth style to try, moving to the next style
// only when the server rejected the client's authentication.
func (c *Client) retrieve(ctx context.Context, sec secrets, fetch fetchFunc) (Token, error) {
	styles := c.styles()
	var err error
	for i, style := range styles {
		obs := &observer{}
		sent := c.now()
		var tk *oauth2.Token
		tk, err = fetch(context.WithValue(ctx, oauth2.HTTPClient, c.observed(obs)), style)
		if err == nil {
			if len(styles) > 1 {
				c.learned.Store(int32(style))
			}
			return c.token(tk, sent), nil
		}
		err = c.classify(ctx, err, obs, sec)
		if i == len(styles)-1 || !isClientAuthFailure(err) {
			break
		}
	}
	return Token{}, err
}

// token normalises a successful response.
func (c *Client) token(tk *oauth2.Token, sent time.Time) Token {
	t := Token{
		AccessToken:  tk.AccessToken,
		TokenType:    tk.Type(),
		RefreshToken: tk.RefreshToken,
	}
	if s, ok := tk.Extra("scope").(string); ok {
		t.Scope = s
	}
	n, ok := expiresIn(tk)
	switch {
	case !ok:
		t.ExpiresIn, t.ExpiresInDefaulted = c.cfg.DefaultExpiresIn, true
	case c.cfg.ExpiresInMillis:
		t.ExpiresIn = time.Duration(n) * time.Millisecond
	default:
		t.ExpiresIn = time.Duration(n) * time.Second
	}
	t.Expiry = sent.Add(t.ExpiresIn)
	return t
}

// expiresIn reads expires_in from the raw response, where x/oauth2 keeps it
// for every response type (clientcredentials does not copy Token.ExpiresIn).
// Numbers, numeric strings (PayPal) and form-encoded values are accepted; a
// value that is missing, not positive or not a number is not ok. Values are
// capped at MaxInt32, as x/oauth2 does, so the Duration cannot overflow.
func expiresIn(tk *oauth2.Token) (int64, bool) {
	var f float64
	switch v := tk.Extra("expires_in").(type) {
	case float64:
		f = v
	case int64:
		f = float64(v)
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return 0, false
		}
	case nil:
		f = float64(tk.ExpiresIn)
	default:
		return 0, false
	}
	if math.IsNaN(f) || f < 1 {
		return 0, false
	}
	return int64(min(f, math.MaxInt32)), true
}

// observed returns a copy of the configured HTTP client whose transport
// reports to obs.
func (c *Client) observed(obs *observer) *http.Client {
	hc := *c.http
	obs.base = hc.Transport
	if obs.base == nil {
		obs.base = http.DefaultTransport
	}
	hc.Transport = obs
	return &hc
}

// observer records what x/oauth2 does not report in a typed error: the status
// of the last response and an error while reading its body.
type observer struct {
	base http.RoundTripper

	mu      sync.Mutex
	code    int
	readErr error
}

func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	o.mu.Lock()
	o.code = resp.StatusCode
	o.mu.Unlock()
	resp.Body = &observedBody{ReadCloser: resp.Body, o: o}
	return resp, nil
}

func (o *observer) status() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.code
}

func (o *observer) bodyError() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.readErr
}

type observedBody struct {
	io.ReadCloser
	o *observer
}

func (b *observedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.o.mu.Lock()
		if b.o.readErr == nil {
			b.o.readErr = err
		}
		b.o.mu.Unlock()
	}
	return n, err
}
