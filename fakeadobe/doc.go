// Package fakeadobe is a strict, in-memory fake of Adobe IMS (the OAuth 2.0
// identity service) and of a small part of the Adobe Analytics 2.0 API.
//
// The project's tests use it to prove that the broker refreshes tokens
// correctly, so it is deliberately at least as strict as the real services:
//
//   - Refresh tokens rotate: every refresh_token grant returns a new refresh
//     token and revokes the one that was used AT ONCE. Presenting a used
//     refresh token again gets 400 invalid_grant, so a double refresh (two
//     replicas, or a retry that races the first attempt) is caught at once.
//     Options.FixedRefreshTokens turns rotation off.
//   - Refresh tokens expire RefreshTokenLifetime (14 days) after the login that
//     produced the first of the chain; rotation keeps that deadline.
//   - Authorization codes are single use (a second use gets invalid_grant, even
//     if the first failed), expire after 10 minutes, are bound to the
//     redirect_uri given at authorize, and enforce PKCE (S256 or plain) when
//     the authorize request carried a code_challenge. A refresh token is only
//     issued if the authorize scope contained offline_access.
//   - Client authentication is client_secret_basic (Authorization: Basic, with
//     form-urlencoded id and secret as RFC 6749 says) or client_secret_post
//     (client_id and client_secret form fields); using both at once is
//     rejected. Parameters are only read from the form body, never from the
//     URL, and may not repeat.
//   - /ims/token/v3 answers expires_in in seconds (86399 for 24h),
//     /ims/token/v1 in milliseconds, as Adobe does.
//   - Error descriptions never contain a token or a secret.
//   - The Analytics API checks x-api-key (403 403000), then the bearer token
//     (401 401013 when unknown, expired or revoked), then the company in the
//     path and the optional x-proxy-global-company-id header (403 403025).
//
// Time comes from Options.Now, so tests move a fake clock instead of sleeping.
//
// Faults are injected with FailTokenCalls, FailAPICalls (429 with Retry-After,
// 5xx, 401, 403), DropTokenResponses (the grant is carried out but the answer
// is lost, as when a gateway times out after IMS rotated the token),
// SetLatency, SetTokenLifetime, RevokeAccessTokens and RevokeRefreshTokens.
// Stats counts token-endpoint calls by grant type, token errors by OAuth error
// code, and API calls by status.
//
// The same knobs are reachable over HTTP, which the fakeadobe command exposes
// for demos and external fault tests (parameters in the query or a form body):
//
//	GET  /_fake/stats                                           Stats as JSON
//	POST /_fake/reset-stats                                     ResetStats
//	POST /_fake/revoke?what=access|refresh|all                  {"revoked":N}
//	POST /_fake/fail?endpoint=token&n=N&status=S                FailTokenCalls
//	POST /_fake/fail?endpoint=token-drop&n=N&status=S           DropTokenResponses (0: close the connection)
//	POST /_fake/fail?endpoint=api&n=N&status=S&retry_after=2s   FailAPICalls
//	POST /_fake/latency?d=200ms                                 SetLatency
//	POST /_fake/token-lifetime?d=1h                             SetTokenLifetime
//	POST /_fake/login                                           {"refresh_token":"..."} (IssueRefreshToken)
//
// Besides the Adobe endpoints, GET /api/{company}/_fake/bytes?n=N streams
// exactly N bytes of JSON filler, for proxy memory benchmarks.
//
// A Server is an http.Handler and is safe for concurrent use.
package fakeadobe
