package clients

import (
	"errors"
	"fmt"
	"github.com/tokenbroker/tokenbroker/internal/fingerprint"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// Token is an access token of a connection and what is needed to use it.
//
// Its String, GoString and LogValue methods never show the access token, only
// its [Token.Fingerprint]: a Token may be printed and logged.
type Token struct {
	Connection string
	// AccessToken is the bearer credential. Never log it.
	AccessToken string
	// TokenType is usually "Bearer".
	TokenType string
	// Expiry is when the token expires, by the broker's clock.
	Expiry time.Time
	// Generation grows by one each time the connection gets a new token.
	// Report a rejected token by its generation.
	Generation uint64
	// APIKey is the value of the x-api-key header the upstream expects
	// (Adobe: the client id), or "".
	APIKey string
}

func tokenFromProto(p *tokenbrokerv1.Token) (*Token, error) {
	if p.GetAccessToken() == "" {
		return nil, errors.New("clients: the broker answered without an access token")
	}
	t := &Token{
		Connection:  p.GetConnection(),
		AccessToken: p.GetAccessToken(),
		TokenType:   p.GetTokenType(),
		Generation:  p.GetGeneration(),
		APIKey:      p.GetApiKey(),
	}
	if p.GetExpiresAt() != nil {
		if err := p.GetExpiresAt().CheckValid(); err != nil {
			return nil, fmt.Errorf("clients: the broker answered with a bad expiry: %w", err)
		}
		t.Expiry = p.GetExpiresAt().AsTime()
	}
	return t, nil
}

// Fingerprint returns the first 8 hex digits of the SHA-256 of the access
// token, as the broker shows it in logs and in Connection.token_fingerprint.
func (t Token) Fingerprint() string { return fingerprint.Of(t.AccessToken) }

// String describes the token without its secret.
func (t Token) String() string {
	exp := "none"
	if !t.Expiry.IsZero() {
		exp = t.Expiry.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("Token{connection=%s generation=%d type=%s fingerprint=%s expiry=%s}",
		t.Connection, t.Generation, t.authType(), t.Fingerprint(), exp)
}

// GoString is String, so that %#v does not print the access token either.
func (t Token) GoString() string { return t.String() }

// LogValue implements slog.LogValuer without the access token.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("connection", t.Connection),
		slog.Uint64("generation", t.Generation),
		slog.String("type", t.authType()),
		slog.String("fingerprint", t.Fingerprint()),
		slog.Time("expiry", t.Expiry),
	)
}

// OAuth2 returns the token as an *oauth2.Token, whose Extra("generation")
// is the generation (uint64) and Extra("api_key") the API key (string).
func (t Token) OAuth2() *oauth2.Token {
	return (&oauth2.Token{
		AccessToken: t.AccessToken,
		TokenType:   t.authType(),
		Expiry:      t.Expiry,
	}).WithExtra(map[string]any{
		"generation": t.Generation,
		"api_key":    t.APIKey,
	})
}

// authType is the scheme of the Authorization header, with "Bearer" spelt
// as RFC 6750 does whatever case the provider used.
func (t Token) authType() string {
	if t.TokenType == "" || strings.EqualFold(t.TokenType, "bearer") {
		return "Bearer"
	}
	return t.TokenType
}

// setHeaders sets Authorization and, when the token has an API key, x-api-key.
func (t Token) setHeaders(h http.Header) {
	h.Set("Authorization", t.authType()+" "+t.AccessToken)
	if t.APIKey != "" {
		h.Set("X-Api-Key", t.APIKey)
	}
}

// freshAt reports whether the token is still valid at now with margin to spare.
func (t *Token) freshAt(now time.Time, margin time.Duration) bool {
	return t != nil && !t.Expiry.IsZero() && now.Add(margin).Before(t.Expiry)
}
