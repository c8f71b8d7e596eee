package apiproxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// The two benchmarks send the same request to the same local upstream, one
// through the proxy and one directly with a client of the same settings, so
// that one run shows the proxy's overhead:
//
//	go test -run='^$' -bench='Call$|Direct$' -benchmem ./broker/apiproxy/

const benchBody = `{"totalPages":1,"firstPage":true,"lastPage":true,"numberOfElements":2,"number":0,"totalElements":2,` +
	`"content":[{"id":"s300000000_1","name":"Segment one"},{"id":"s300000000_2","name":"Segment two"}]}`

func benchUpstream(b *testing.B, body []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" || r.Header.Get("X-Api-Key") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

var benchReq = Request{
	Path:  "/api/company1/segments",
	Query: map[string]string{"rsids": "r1", "limit": "10", "page": "0"},
}

func BenchmarkCall(b *testing.B) {
	srv := benchUpstream(b, []byte(benchBody))
	p := New(newTokens(), Options{})
	b.Cleanup(p.client.CloseIdleConnections)
	target := targetFor(srv.URL)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := p.Call(ctx, testConnection, target, benchReq)
		if err != nil || resp.StatusCode != 200 || len(resp.Body) != len(benchBody) {
			b.Fatalf("Call = %d %d bytes, %v", resp.StatusCode, len(resp.Body), err)
		}
	}
}

func BenchmarkDirect(b *testing.B) {
	srv := benchUpstream(b, []byte(benchBody))
	client := newClient()
	b.Cleanup(client.CloseIdleConnections)
	u := srv.URL + benchReq.Path + "?limit=10&page=0&rsids=r1"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tokenFor(1))
		req.Header.Set("X-Api-Key", testAPIKey)
		req.Header.Set("X-Proxy-Global-Company-Id", testCompanyID)
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(body) != len(benchBody) {
			b.Fatalf("Do = %d %d bytes, %v", resp.StatusCode, len(body), err)
		}
	}
}

// BenchmarkCallLargeBody shows the memory a 20 MB answer with a
// Content-Length costs: B/op should be about the body's size, not the two to
// three times of a growing buffer. (The upstream runs in the same process;
// its share is small.)
func BenchmarkCallLargeBody(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 20<<20)
	srv := benchUpstream(b, body)
	p := New(newTokens(), Options{})
	b.Cleanup(p.client.CloseIdleConnections)
	target := targetFor(srv.URL)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := p.Call(ctx, testConnection, target, benchReq)
		if err != nil || len(resp.Body) != len(body) {
			b.Fatalf("Call = %d bytes, %v", len(resp.Body), err)
		}
	}
}
