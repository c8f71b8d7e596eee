package fakeadobe

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Adobe-shaped error bodies of the Analytics API.
var (
	bodyTokenInvalid  = map[string]string{"error_code": "401013", "message": "Oauth token is not valid"}
	bodyAPIKeyInvalid = map[string]string{"error_code": "403000", "message": "Api Key is invalid"}
	bodyTooMany       = map[string]string{"error_code": "429050", "message": "Too many requests"}
	bodyCompany       = map[string]string{"errorCode": "403025", "errorDescription": "Profile is not valid: unknown global company id or no access to it"}
)

func apiError(code, desc string) map[string]string {
	return map[string]string{"errorCode": code, "errorDescription": desc}
}

// statusWriter counts the response status in Stats when the header is
// written, so the count is in place before the client sees the answer.
type statusWriter struct {
	http.ResponseWriter
	s     *Server
	wrote bool
}

func (sw *statusWriter) WriteHeader(code int) {
	if !sw.wrote && code >= 200 {
		sw.wrote = true
		sw.s.mu.Lock()
		sw.s.stats.APIStatus[code]++
		sw.s.mu.Unlock()
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if !sw.wrote {
		sw.WriteHeader(http.StatusOK)
	}
	return sw.ResponseWriter.Write(b)
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

// serveAPI serves /discovery/me and /api/{company}/...
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.APICalls++
	f, injected := s.apiFault.take()
	s.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w, s: s}
	defer func() {
		if !sw.wrote {
			sw.WriteHeader(http.StatusOK)
		}
	}()
	if injected {
		writeAPIFault(sw, f)
		return
	}
	if key := r.Header.Get("x-api-key"); key == "" || key != s.clientID {
		writeJSON(sw, http.StatusForbidden, bodyAPIKeyInvalid)
		return
	}
	if tok, ok := bearerToken(r); !ok || !s.accessValid(tok) {
		writeJSON(sw, http.StatusUnauthorized, bodyTokenInvalid)
		return
	}
	if r.URL.Path == DiscoveryPath {
		if !allowMethod(sw, r, http.MethodGet) {
			return
		}
		s.serveDiscovery(sw)
		return
	}
	company, sub, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, APIPrefix), "/")
	if company != s.companyID {
		writeJSON(sw, http.StatusForbidden, bodyCompany)
		return
	}
	if vs := r.Header.Values("x-proxy-global-company-id"); len(vs) > 0 && (len(vs) != 1 || vs[0] != company) {
		writeJSON(sw, http.StatusForbidden, bodyCompany)
		return
	}
	switch sub {
	case "reportsuites/collections/suites":
		if allowMethod(sw, r, http.MethodGet) {
			serveSuites(sw, r)
		}
	case "reports":
		if allowMethod(sw, r, http.MethodPost) {
			serveReport(sw, r)
		}
	case "_fake/bytes":
		if allowMethod(sw, r, http.MethodGet) {
			serveBytes(sw, r)
		}
	default:
		writeJSON(sw, http.StatusNotFound, apiError("resource_not_found", "no such resource on the fake Analytics API"))
	}
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeJSON(w, http.StatusMethodNotAllowed, apiError("method_not_allowed", "use "+method))
	return false
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func writeAPIFault(w http.ResponseWriter, f fault) {
	status := f.status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	if status == http.StatusTooManyRequests || f.retryAfter > 0 {
		secs := max(int64(math.Ceil(f.retryAfter.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	switch status {
	case http.StatusTooManyRequests:
		writeJSON(w, status, bodyTooMany)
	case http.StatusUnauthorized:
		writeJSON(w, status, bodyTokenInvalid)
	case http.StatusForbidden:
		writeJSON(w, status, bodyCompany)
	default:
		writeJSON(w, status, map[string]string{"error_code": strconv.Itoa(status) + "000", "message": http.StatusText(status)})
	}
}

type discoveryCompany struct {
	GlobalCompanyID    string `json:"globalCompanyId"`
	CompanyName        string `json:"companyName"`
	APIRateLimitPolicy string `json:"apiRateLimitPolicy"`
	DPC                string `json:"dpc"`
}

type discoveryOrg struct {
	IMSOrgID  string             `json:"imsOrgId"`
	Companies []discoveryCompany `json:"companies"`
}

type discovery struct {
	IMSUserID string         `json:"imsUserId"`
	IMSOrgs   []discoveryOrg `json:"imsOrgs"`
}

func (s *Server) serveDiscovery(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, discovery{
		IMSUserID: IMSUserID,
		IMSOrgs: []discoveryOrg{{
			IMSOrgID: IMSOrgID,
			Companies: []discoveryCompany{{
				GlobalCompanyID:    s.companyID,
				CompanyName:        "Fake Company",
				APIRateLimitPolicy: "aa_api_tier10_tp",
				DPC:                "pnw",
			}},
		}},
	})
}

type suite struct {
	CollectionItemType string `json:"collectionItemType"`
	RSID               string `json:"rsid"`
	Name               string `json:"name"`
}

type suitesPage struct {
	Content          []suite `json:"content"`
	TotalElements    int     `json:"totalElements"`
	TotalPages       int     `json:"totalPages"`
	NumberOfElements int     `json:"numberOfElements"`
	FirstPage        bool    `json:"firstPage"`
	LastPage         bool    `json:"lastPage"`
	Sort             any     `json:"sort"`
	Size             int     `json:"size"`
	Number           int     `json:"number"`
}

var suites = []suite{{CollectionItemType: "reportsuite", RSID: ReportSuiteID, Name: "Fake Report Suite"}}

// intParam parses an optional integer query parameter in [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

func serveSuites(w http.ResponseWriter, r *http.Request) {
	limit, ok1 := intParam(r, "limit", 10, 1, 1000)
	page, ok2 := intParam(r, "page", 0, 0, math.MaxInt32)
	if !ok1 || !ok2 {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "limit must be 1..1000 and page >= 0"))
		return
	}
	content, totalPages := paginate(suites, limit, page)
	writeJSON(w, http.StatusOK, suitesPage{
		Content:          content,
		TotalElements:    len(suites),
		TotalPages:       totalPages,
		NumberOfElements: len(content),
		FirstPage:        page == 0,
		LastPage:         page >= totalPages-1,
		Size:             limit,
		Number:           page,
	})
}

func paginate[T any](all []T, limit, page int) ([]T, int) {
	totalPages := len(all) / limit
	if len(all)%limit != 0 {
		totalPages++
	}
	start := len(all)
	if len(all) > 0 && page <= (len(all)-1)/limit {
		start = page * limit
	}
	end := start + min(limit, len(all)-start)
	return append([]T{}, all[start:end]...), totalPages
}

type reportRequest struct {
	RSID            string `json:"rsid"`
	Dimension       string `json:"dimension"`
	MetricContainer struct {
		Metrics []struct {
			ColumnID string `json:"columnId"`
			ID       string `json:"id"`
		} `json:"metrics"`
	} `json:"metricContainer"`
	Settings struct {
		Limit int `json:"limit"`
		Page  int `json:"page"`
	} `json:"settings"`
}

type reportRow struct {
	ItemID string    `json:"itemId"`
	Value  string    `json:"value"`
	Data   []float64 `json:"data"`
}

type reportDimension struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

type reportColumns struct {
	Dimension reportDimension `json:"dimension"`
	ColumnIDs []string        `json:"columnIds"`
}

type reportSummary struct {
	FilteredTotals []float64 `json:"filteredTotals"`
	Totals         []float64 `json:"totals"`
}

type report struct {
	TotalPages       int           `json:"totalPages"`
	FirstPage        bool          `json:"firstPage"`
	LastPage         bool          `json:"lastPage"`
	NumberOfElements int           `json:"numberOfElements"`
	Number           int           `json:"number"`
	TotalElements    int           `json:"totalElements"`
	Columns          reportColumns `json:"columns"`
	Rows             []reportRow   `json:"rows"`
	SummaryData      reportSummary `json:"summaryData"`
}

const reportRows = 5

func serveReport(w http.ResponseWriter, r *http.Request) {
	var req reportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "the request body is not a valid JSON report request"))
		return
	}
	if req.RSID == "" {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "rsid is required"))
		return
	}
	limit, page := req.Settings.Limit, req.Settings.Page
	if limit <= 0 {
		limit = 50
	}
	if page < 0 || limit > 50000 {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "settings.limit must be <= 50000 and settings.page >= 0"))
		return
	}
	dim := reportDimension{ID: req.Dimension, Type: "string"}
	if dim.ID == "" {
		dim.ID = "variables/daterangeday"
	}
	if dim.ID == "variables/daterangeday" {
		dim.Type = "time"
	}
	var colIDs []string
	for i, m := range req.MetricContainer.Metrics {
		id := m.ColumnID
		if id == "" {
			id = strconv.Itoa(i)
		}
		colIDs = append(colIDs, id)
	}
	if len(colIDs) == 0 {
		colIDs = []string{"0"} // metrics/pageviews
	}
	rows := make([]reportRow, reportRows)
	totals := make([]float64, len(colIDs))
	day := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		row := reportRow{ItemID: strconv.Itoa(1000 + i), Value: "Item " + strconv.Itoa(i+1)}
		if dim.Type == "time" {
			d := day.AddDate(0, 0, i)
			row.ItemID = "1" + d.Format("060102")
			row.Value = d.Format("Jan 2, 2006")
		}
		for j := range colIDs {
			v := float64((reportRows-i)*100 + (j+1)*7)
			row.Data = append(row.Data, v)
			totals[j] += v
		}
		rows[i] = row
	}
	pageRows, totalPages := paginate(rows, limit, page)
	writeJSON(w, http.StatusOK, report{
		TotalPages:       totalPages,
		FirstPage:        page == 0,
		LastPage:         page >= totalPages-1,
		NumberOfElements: len(pageRows),
		Number:           page,
		TotalElements:    len(rows),
		Columns:          reportColumns{Dimension: dim, ColumnIDs: colIDs},
		Rows:             pageRows,
		SummaryData:      reportSummary{FilteredTotals: totals, Totals: totals},
	})
}

// MaxFakeBytes caps /api/{company}/_fake/bytes?n=.
const MaxFakeBytes = 1 << 36

var filler = []byte(strings.Repeat("x", 32<<10))

// serveBytes streams exactly n bytes: {"filler":"xxx..."} when n >= 13,
// else n spaces.
func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > MaxFakeBytes {
		writeJSON(w, http.StatusBadRequest, apiError("invalid_request", "n must be an integer in [0, 2^36]"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	const prefix, suffix = `{"filler":"`, `"}`
	if n < int64(len(prefix)+len(suffix)) {
		_, _ = w.Write([]byte(strings.Repeat(" ", int(n))))
		return
	}
	if _, err := w.Write([]byte(prefix)); err != nil {
		return
	}
	left := n - int64(len(prefix)+len(suffix))
	ctx := r.Context()
	for left > 0 {
		if ctx.Err() != nil {
			return
		}
		chunk := filler[:min(left, int64(len(filler)))]
		if _, err := w.Write(chunk); err != nil {
			return
		}
		left -= int64(len(chunk))
	}
	_, _ = w.Write([]byte(suffix))
}
