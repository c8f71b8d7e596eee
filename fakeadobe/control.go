package fakeadobe

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serveControl serves the knobs under /_fake/. Parameters may be given in
// the query string or a form body.
//
//	GET  /_fake/stats                                    Stats as JSON
//	POST /_fake/reset-stats                              ResetStats
//	POST /_fake/revoke?what=access|refresh|all           {"revoked":N}
//	POST /_fake/fail?endpoint=token&n=N&status=S         FailTokenCalls
//	POST /_fake/fail?endpoint=token-drop&n=N&status=S    DropTokenResponses (status 0: close the connection)
//	POST /_fake/fail?endpoint=api&n=N&status=S&retry_after=2s   FailAPICalls
//	POST /_fake/latency?d=200ms                          SetLatency
//	POST /_fake/token-lifetime?d=1h                      SetTokenLifetime
//	POST /_fake/login                                    {"refresh_token":"..."} (IssueRefreshToken)
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, ControlPrefix)
	bad := func(desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": desc})
	}
	if name == "stats" {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "use GET"})
			return
		}
		writeJSON(w, http.StatusOK, s.Stats())
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "use POST"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	switch name {
	case "reset-stats":
		s.ResetStats()
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case "login":
		writeJSON(w, http.StatusOK, map[string]string{"refresh_token": s.IssueRefreshToken()})
	case "revoke":
		n := 0
		switch r.FormValue("what") {
		case "access":
			n = s.RevokeAccessTokens()
		case "refresh":
			n = s.RevokeRefreshTokens()
		case "all":
			n = s.RevokeAccessTokens() + s.RevokeRefreshTokens()
		default:
			bad("what must be access, refresh or all")
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
	case "latency", "token-lifetime":
		d, err := time.ParseDuration(r.FormValue("d"))
		if err != nil || d < 0 {
			bad("d must be a duration such as 200ms")
			return
		}
		if name == "latency" {
			s.SetLatency(d)
		} else {
			s.SetTokenLifetime(d)
		}
		writeJSON(w, http.StatusOK, map[string]string{name: d.String()})
	case "fail":
		s.serveFail(w, r, bad)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "unknown control endpoint"})
	}
}

func (s *Server) serveFail(w http.ResponseWriter, r *http.Request, bad func(string)) {
	endpoint := r.FormValue("endpoint")
	n, err := strconv.Atoi(r.FormValue("n"))
	if err != nil || n < 0 {
		bad("n must be an integer >= 0")
		return
	}
	status, statusErr := strconv.Atoi(r.FormValue("status"))
	validStatus := statusErr == nil && status >= 400 && status <= 599
	var retryAfter time.Duration
	if v := r.FormValue("retry_after"); v != "" {
		retryAfter, err = time.ParseDuration(v)
		if err != nil || retryAfter < 0 {
			bad("retry_after must be a duration such as 2s")
			return
		}
	}
	switch endpoint {
	case "token":
		if !validStatus {
			bad("status must be 400..599")
			return
		}
		s.FailTokenCalls(n, status)
	case "token-drop":
		if !validStatus && !(statusErr == nil && status == 0) {
			bad("status must be 0 (close the connection) or 400..599")
			return
		}
		s.DropTokenResponses(n, status)
	case "api":
		if !validStatus {
			bad("status must be 400..599")
			return
		}
		s.FailAPICalls(n, status, retryAfter)
	default:
		bad("endpoint must be token, token-drop or api")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoint": endpoint, "n": n, "status": status})
}
