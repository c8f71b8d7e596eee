// Package provider talks to an OAuth 2.0 token endpoint (RFC 6749) on behalf of
// the broker's refresher.
//
// It owns the wire protocol with the identity provider and nothing else: how
// the client authenticates (client_secret_basic, client_secret_post, or
// auto-detection), the refresh_token, authorization_code (with PKCE S256) and
// client_credentials grants, normalising the response into a [Token], and
// classifying every failure as [Transient] or [Permanent] in an [*Error] whose
// message never carries a token, code, verifier or client secret. It does not
// retry, schedule, store or log; those belong to the caller.
//
// The HTTP exchange itself is done by golang.org/x/oauth2. This package adds
// what that library leaves to the application: the expiry is computed from
// expires_in and an injected clock (never from the server's clock), Adobe's
// /ims/token/v1 endpoint is read in milliseconds, auth-style auto-detection only
// falls back on a client-authentication failure, and errors are rebuilt from
// sanitised parts instead of the library's messages, which quote the response
// body.
//
// Decisions a caller must know:
//
//   - A response without a usable expires_in (missing, null, zero, negative,
//     or not a number in a form-encoded body) is not an error: the token gets
//     [Config.DefaultExpiresIn] (one hour unless set) and
//     [Token.ExpiresInDefaulted] is true. Failing instead would drop a refresh
//     token the server may already have rotated.
//   - A 200 response without an access_token, or one that cannot be parsed, is
//     a [Transient] error with Code "bad_response": the next attempt either
//     succeeds or gets a definite answer (invalid_grant if the grant was used).
//     x/oauth2 cannot parse a JSON expires_in that is not an integer (3600.5,
//     "soon"), so such a response is a bad_response too.
//   - [Token.Expiry] counts from the moment the request was sent, a lower bound
//     of when the server issued the token, so it is never later than the real
//     expiry however slow the response was.
//   - A caller's cancelled context comes back as that context's error, wrapped
//     (errors.Is(err, context.Canceled)), and is neither transient nor
//     permanent. A context deadline that expires during the call is a
//     [Transient] "timeout".
package provider
