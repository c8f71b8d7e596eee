// Package apiproxy makes Adobe Analytics 2.0 API calls on behalf of callers
// that must never see the access token: it is what the CallAnalytics RPC runs.
//
// A call names a connection, the connection's Target (base URL, API key and
// fixed headers from config) and a Request relative to the base URL. The
// proxy checks the request (method, path, headers, sizes) before anything is
// sent, asks the broker for a token, adds Authorization, x-api-key and the
// Target's headers, and reads the answer with a size cap.
//
// Retries are few and bounded:
//   - Any 401 reports the generation it used to Tokens.Invalidate and is
//     retried once with the newer credential. A 401 means the upstream did not
//     accept the credentials, and the bearer token is the only one the caller
//     cannot fix, so the proxy does not try to recognise the body (Adobe's
//     gateway {"error_code":"401013"}, the service's
//     {"errorCode":"invalid_token"}, WWW-Authenticate: Bearer
//     error="invalid_token", or a shape not seen yet). The broker refreshes a
//     generation at most once and throttles connections whose fresh tokens are
//     rejected again and again, so this cannot turn into a refresh storm. A
//     second 401 is returned as it is.
//   - A 403 is never a reason to refresh (Adobe's 403000, 403003, 403010,
//     403011 and 403025 are about the API key, the company or permissions).
//   - A 429 whose Retry-After is at most Options.MaxRetryAfter (and ends
//     before the context's deadline) is waited out and retried once; any
//     other 429 is returned to the caller.
//   - 5xx and everything else are returned as they are: the caller decides.
//
// Both retries are safe for POST, PUT and PATCH too: a 401 or a 429 means the
// upstream did not act on the request.
//
// Errors carry no token and no query values: ErrNotAllowed for requests the
// proxy refuses to send, ErrUpstream for transport failures and oversized
// answers, ErrBadTarget for a Target the proxy cannot use, and the errors of
// Tokens wrapped as they are so that the server can map the broker's own
// domain errors. Each upstream attempt is logged at debug level with a short
// SHA-256 fingerprint of the token, never the token.
package apiproxy
