package clients_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/clients"
)

func TestTokenNeverPrintsSecret(t *testing.T) {
	tok := clients.Token{
		Connection:  "adobe-prod",
		AccessToken: "abc",
		TokenType:   "bearer",
		Expiry:      time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC),
		Generation:  7,
		APIKey:      "client-id",
	}
	const want = "Token{connection=adobe-prod generation=7 type=Bearer fingerprint=ba7816bf expiry=2026-03-01T13:00:00Z}"
	if got := tok.String(); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := tok.Fingerprint(); got != "ba7816bf" { // SHA-256("abc") = ba7816bf...
		t.Errorf("Fingerprint = %q", got)
	}

	var buf bytes.Buffer
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&buf, format+"\n", tok)
		fmt.Fprintf(&buf, format+"\n", &tok)
	}
	fmt.Fprintln(&buf, []clients.Token{tok}, map[string]*clients.Token{"t": &tok}, struct{ T clients.Token }{tok})
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("got", "token", tok, "ptr", &tok)
	logger = slog.New(slog.NewTextHandler(&buf, nil))
	logger.Info("got", "token", tok, "ptr", &tok)

	out := buf.String()
	if strings.Contains(out, `"abc"`) || strings.Contains(out, "=abc") || strings.Contains(out, " abc") || strings.Contains(out, ":abc") {
		t.Errorf("output shows the access token:\n%s", out)
	}
	if !strings.Contains(out, `"fingerprint":"ba7816bf"`) || !strings.Contains(out, "token.fingerprint=ba7816bf") {
		t.Errorf("logs lack the fingerprint:\n%s", out)
	}
}

func TestTokenOAuth2(t *testing.T) {
	tok := clients.Token{AccessToken: "abc", Expiry: time.Now().Add(time.Hour), Generation: 3, APIKey: "k"}
	o := tok.OAuth2()
	if o.AccessToken != "abc" || o.TokenType != "Bearer" || !o.Expiry.Equal(tok.Expiry) {
		t.Errorf("OAuth2 = %+v", o)
	}
	if o.Extra("generation") != uint64(3) || o.Extra("api_key") != "k" {
		t.Errorf("extras: generation %v, api_key %v", o.Extra("generation"), o.Extra("api_key"))
	}
}
