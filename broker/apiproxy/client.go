package apiproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

const maxRedirects = 3

var (
	errCrossOrigin      = errors.New("redirect to another origin refused")
	errTooManyRedirects = errors.New("more than 3 redirects")
	errRedirectWithUser = errors.New("redirect to a URL with user info refused")
)

// newClient is the client used when Options.Client is nil.
func newClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          100,
			// Most calls go to one host (analytics.adobe.io): keep more than
			// the default 2 connections to it.
			MaxIdleConnsPerHost: 16,
			ForceAttemptHTTP2:   true,
		},
		Timeout: 60 * time.Second,
	}
}

// sameOriginRedirects is the redirect policy: at most 3 redirects, each to the
// origin of the first request, then next (a given client's policy) if any.
// Go's client keeps Authorization and x-api-key on redirects to the same
// host, so refusing other origins is what keeps them from leaving.
func sameOriginRedirects(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		switch {
		case len(via) > maxRedirects:
			return errTooManyRedirects
		case req.URL.User != nil:
			return errRedirectWithUser
		case origin(req.URL) != origin(via[0].URL):
			return errCrossOrigin
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
}

// upstreamError is an error whose message is written here, so that it names
// no URL query value, while errors.Is and errors.As still see its causes.
type upstreamError struct {
	msg    string
	class  string
	causes []error
}

func (e *upstreamError) Error() string   { return e.msg }
func (e *upstreamError) Unwrap() []error { return e.causes }

// transportError wraps a failed request or body read. The url.Error around
// it is dropped: its message carries the URL with its query.
func transportError(ctx context.Context, pr *prepared, err error, during string) *upstreamError {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	class := errorClass(err)
	causes := []error{ErrUpstream, err}
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller gave up; whatever the transport says, that is why.
		class = ctxClass(ctxErr)
		causes = append(causes, ctxErr)
	}
	return &upstreamError{
		msg:    fmt.Sprintf("%v: %s %s: %s%s", ErrUpstream, pr.method, pr.path, during, class),
		class:  class,
		causes: causes,
	}
}

func ctxClass(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline exceeded"
	}
	return "canceled"
}

// errorClass names what went wrong without repeating the error's text.
func errorClass(err error) string {
	var (
		dnsErr  *net.DNSError
		opErr   *net.OpError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		authErr x509.UnknownAuthorityError
		hostErr x509.HostnameError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, errCrossOrigin):
		return errCrossOrigin.Error()
	case errors.Is(err, errTooManyRedirects):
		return errTooManyRedirects.Error()
	case errors.Is(err, errRedirectWithUser):
		return errRedirectWithUser.Error()
	case errors.Is(err, errLongerThanLength):
		return errLongerThanLength.Error()
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &dnsErr):
		return "DNS lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &hostErr),
		errors.As(err, &recErr), errors.As(err, &alert):
		return "TLS failed"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "connection failed"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the upstream"
	default:
		return fmt.Sprintf("transport error (%T)", err)
	}
}
