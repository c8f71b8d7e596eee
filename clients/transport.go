package clients

import (
	"fmt"
	"io"
	"net/http"
)

// Transport is an http.RoundTripper that authenticates requests with the
// tokens of a TokenSource: it sets "Authorization: <type> <token>" and, when
// the connection has one, "x-api-key".
//
// When the upstream answers 401, Transport reports the token's generation with
// TokenSource.Invalidate and sends the request once more with the newer token,
// if the body can be sent again (no body, http.NoBody, or GetBody set, as
// http.NewRequest does for in-memory bodies). A request whose body cannot be
// replayed gets the 401; its token is still reported, so the next request
// carries a new one. A 403 is returned as it is: it is not about the token.
// If the report fails, RoundTrip returns its error (which matches the sentinel
// errors, such as ErrNeedsReauth) instead of the 401.
//
// The caller's request is never modified: each attempt is a clone.
type Transport struct {
	// Source gives the tokens. Required.
	Source *TokenSource
	// Base sends the requests. Nil means http.DefaultTransport.
	Base http.RoundTripper
}

// NewTransport returns a Transport that takes tokens from ts and sends requests
// with base (nil: http.DefaultTransport).
func NewTransport(ts *TokenSource, base http.RoundTripper) *Transport {
	return &Transport{Source: ts, Base: base}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	tok, err := t.Source.CurrentContext(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	first := req.Clone(ctx)
	tok.setHeaders(first.Header)
	resp, err := t.base().RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}

	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	reason := fmt.Sprintf("HTTP 401 from %s %s%s", req.Method, req.URL.Host, req.URL.Path)
	if len(reason) > 200 {
		reason = reason[:200]
	}
	if !replayable {
		// Report the token so that the next request gets a good one, but give
		// this caller the upstream's answer: the body is gone.
		_, _ = t.Source.Invalidate(ctx, tok.Generation, reason)
		return resp, nil
	}
	// Free the first response (and its connection) before the second attempt.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()

	tok, err = t.Source.Invalidate(ctx, tok.Generation, reason)
	if err != nil {
		return nil, fmt.Errorf("clients: upstream answered 401 and the token could not be renewed: %w", err)
	}
	second := req.Clone(ctx)
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		second.Body, err = req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("clients: replaying the request body: %w", err)
		}
	}
	tok.setHeaders(second.Header)
	return t.base().RoundTrip(second)
}

// CloseIdleConnections closes the idle connections of Base, if it can, so
// that http.Client.CloseIdleConnections works through a Transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base().(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
