package provider

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AuthStyle says how the client authenticates to the token endpoint.
type AuthStyle string

const (
	// AuthStyleAuto tries HTTP Basic first and, only if the server rejects the
	// client's authentication (400/401 with invalid_client, unauthorized_client,
	// invalid_request or no OAuth error code), the form fields. The style that
	// worked is remembered for the life of the [Client]. The empty string means
	// the same.
	AuthStyleAuto AuthStyle = "auto"
	// AuthStyleBasic is client_secret_basic: the client id and secret, each
	// form-urlencoded (RFC 6749 section 2.3.1), in an Authorization: Basic header.
	AuthStyleBasic AuthStyle = "basic"
	// AuthStyleForm is client_secret_post: client_id and client_secret as form
	// fields in the request body.
	AuthStyleForm AuthStyle = "form"
)

// DefaultIMSBaseURL is the Adobe IMS host used by [Adobe] when none is given.
const DefaultIMSBaseURL = "https://ims-na1.adobelogin.com"

// DefaultExpiresIn is the lifetime assumed for a token whose response carries
// no usable expires_in, unless [Config.DefaultExpiresIn] says otherwise.
const DefaultExpiresIn = time.Hour

// DefaultHTTPTimeout bounds one call to the token endpoint when
// [Config.HTTPClient] is nil.
const DefaultHTTPTimeout = 30 * time.Second

// Config describes one OAuth 2.0 client registration at one token endpoint.
type Config struct {
	// TokenURL is the token endpoint. It must be https, or http on a loopback
	// host (tests, a local sidecar) unless AllowInsecureHTTP is set.
	TokenURL string
	// AuthURL is the authorization endpoint, used only by [Client.AuthCodeURL].
	AuthURL string
	// ClientID is the client identifier. Required.
	ClientID string
	// ClientSecret is the client secret. It may be empty for a public client.
	ClientSecret string
	// AuthStyle is how the client authenticates; empty means auto.
	AuthStyle AuthStyle
	// Scopes are requested by [Client.AuthCodeURL] and
	// [Client.ClientCredentials]. A refresh sends no scope, which by RFC 6749
	// section 6 keeps the scope originally granted.
	Scopes []string
	// ExpiresInMillis reads expires_in as milliseconds (Adobe /ims/token/v1).
	ExpiresInMillis bool
	// DefaultExpiresIn is the lifetime assumed when a response has no usable
	// expires_in. Zero means [DefaultExpiresIn].
	DefaultExpiresIn time.Duration
	// HTTPClient makes the requests. Nil means a client with
	// [DefaultHTTPTimeout]. Its Transport, Jar, CheckRedirect and Timeout are
	// used; the client itself is not modified.
	HTTPClient *http.Client
	// Now is the clock used to compute [Token.Expiry] and to read a
	// Retry-After date. Nil means time.Now.
	Now func() time.Time
	// AllowInsecureHTTP permits a plain http TokenURL or AuthURL on a
	// non-loopback host. The client secret and tokens then cross the network
	// in clear text.
	AllowInsecureHTTP bool
}

// Adobe returns the configuration for Adobe IMS.
//
// imsBaseURL is the IMS host ("" means [DefaultIMSBaseURL]); the token URL is
// host+"/ims/token/v3" and the authorize URL host+"/ims/authorize/v2". If
// imsBaseURL is instead a full token URL whose path ends in /ims/token/vN, that
// URL is the token URL and the authorize URL is built from the part before it,
// so a deployment can pin the older v1 endpoint. ExpiresInMillis is true
// exactly when the token URL's path ends in "/ims/token/v1", the endpoint that
// answers expires_in in milliseconds. The client authenticates with form
// fields, as Adobe's own examples do; scopes are used as given (a
// refresh_token connection needs "offline_access" among them).
func Adobe(imsBaseURL string, clientID, clientSecret string, scopes []string) Config {
	base := strings.TrimRight(strings.TrimSpace(imsBaseURL), "/")
	if base == "" {
		base = DefaultIMSBaseURL
	}
	tokenURL := base + "/ims/token/v3"
	if u, err := url.Parse(base); err == nil {
		if i := strings.LastIndex(u.Path, "/ims/token/v"); i >= 0 && !strings.Contains(u.Path[i+len("/ims/token/v"):], "/") {
			tokenURL = base
			u.Path = u.Path[:i]
			u.RawPath = ""
			u.RawQuery = ""
			u.Fragment = ""
			base = strings.TrimRight(u.String(), "/")
		}
	}
	return Config{
		TokenURL:        tokenURL,
		AuthURL:         base + "/ims/authorize/v2",
		ClientID:        clientID,
		ClientSecret:    clientSecret,
		AuthStyle:       AuthStyleForm,
		Scopes:          append([]string(nil), scopes...),
		ExpiresInMillis: isAdobeV1(tokenURL),
	}
}

// isAdobeV1 reports whether tokenURL is Adobe's millisecond endpoint.
func isAdobeV1(tokenURL string) bool {
	u, err := url.Parse(tokenURL)
	if err != nil {
		return false
	}
	return strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/ims/token/v1")
}

// Validate reports every problem with c, each prefixed with its field name.
// Messages never contain the client secret.
func (c Config) Validate() error {
	var errs []error
	if c.TokenURL == "" {
		errs = append(errs, &FieldError{"TokenURL", "required"})
	} else if err := checkEndpoint(c.TokenURL, c.AllowInsecureHTTP); err != nil {
		errs = append(errs, &FieldError{"TokenURL", err.Error()})
	}
	if c.AuthURL != "" {
		if err := checkEndpoint(c.AuthURL, c.AllowInsecureHTTP); err != nil {
			errs = append(errs, &FieldError{"AuthURL", err.Error()})
		}
	}
	if strings.TrimSpace(c.ClientID) == "" {
		errs = append(errs, &FieldError{"ClientID", "required"})
	}
	switch c.AuthStyle {
	case "", AuthStyleAuto, AuthStyleBasic, AuthStyleForm:
	default:
		errs = append(errs, &FieldError{"AuthStyle", fmt.Sprintf("%q is not one of auto, basic, form", string(c.AuthStyle))})
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			errs = append(errs, &FieldError{fmt.Sprintf("Scopes[%d]", i), fmt.Sprintf("%q is not a valid scope token", s)})
		}
	}
	if c.DefaultExpiresIn < 0 {
		errs = append(errs, &FieldError{"DefaultExpiresIn", "negative"})
	}
	return errors.Join(errs...)
}

// FieldError is one problem found by [Config.Validate]. Field is the Config
// field's name, so a caller can prefix its own path ("connections[2].").
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// checkEndpoint accepts an absolute https URL, or http on a loopback host.
// It describes the problem without echoing the URL, which could carry
// credentials in its userinfo or query.
func checkEndpoint(raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Host == "" {
		return errors.New("not an absolute URL")
	}
	if u.User != nil {
		return errors.New("must not carry user information")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !isLoopback(u.Hostname()) {
			return errors.New("plain http is allowed only on a loopback host (set AllowInsecureHTTP to override)")
		}
	default:
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
