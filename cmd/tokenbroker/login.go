package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/provider"
	"github.com/tokenbroker/tokenbroker/internal/config"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// openBrowser opens a URL for the user; tests replace it with an HTTP client
// that follows the fake's immediate approval.
var openBrowser = func(u string) error {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return errors.New("no display")
	}
	for _, cmd := range []string{"xdg-open", "open"} {
		if p, err := exec.LookPath(cmd); err == nil {
			return exec.Command(p, u).Start()
		}
	}
	return errors.New("no browser opener")
}

// loginInput is where a pasted redirect URL is read from.
var loginInput io.Reader = os.Stdin

// runLogin runs the authorization-code flow with PKCE (S256) from a terminal
// and seeds the connection through Admin.SeedToken.
func runLogin(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	var d dialFlags
	d.register(fs)
	conn := fs.String("connection", "", "connection to log in")
	cfgPath := fs.String("config", "", "broker config file, to read the connection's client id, authorize URL and scopes")
	authURL := fs.String("auth-url", "", "authorize endpoint (default: from --config; Adobe: https://ims-na1.adobelogin.com/ims/authorize/v2)")
	clientID := fs.String("client-id", "", "OAuth client id (default: from --config)")
	scopes := fs.String("scopes", "", "comma-separated scopes (default: from --config)")
	redirect := fs.String("redirect-uri", "http://127.0.0.1:8765/callback", "redirect URI registered with the provider; an http loopback URI is served here, any other is pasted back")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the login")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conn == "" {
		return errors.New("--connection is required")
	}
	if *cfgPath != "" {
		cc, err := connectionFromConfig(*cfgPath, *conn)
		if err != nil {
			return err
		}
		if *authURL == "" {
			*authURL = cc.AuthURL
		}
		if *clientID == "" {
			*clientID = cc.ClientID
		}
		if *scopes == "" {
			*scopes = strings.Join(cc.Scopes, ",")
		}
	}
	if *authURL == "" || *clientID == "" {
		return errors.New("give --config, or --auth-url and --client-id")
	}
	ru, err := url.Parse(*redirect)
	if err != nil || ru.Scheme == "" || ru.Host == "" {
		return fmt.Errorf("--redirect-uri %q is not an absolute URL", *redirect)
	}
	var scopeList []string
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopeList = append(scopeList, s)
		}
	}
	if !contains(scopeList, "offline_access") {
		fmt.Fprintln(os.Stderr, "note: the scopes lack offline_access; the provider may issue no refresh token")
	}
	pc, err := provider.New(provider.Config{TokenURL: *authURL, AuthURL: *authURL, ClientID: *clientID, Scopes: scopeList})
	if err != nil {
		return err
	}
	verifier := provider.NewVerifier()
	state := randomHex(16)
	u := pc.AuthCodeURL(state, provider.Challenge(verifier), *redirect)

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	codes := make(chan result, 1)
	if ru.Scheme == "http" && isLoopbackHost(ru.Hostname()) {
		stop, err := serveCallback(ctx, ru, state, codes)
		if err != nil {
			return err
		}
		defer stop()
	} else {
		go readPasted(loginInput, state, codes)
	}
	fmt.Fprintf(os.Stderr, "Open this URL in a browser and log in:\n\n  %s\n\n", u)
	if err := openBrowser(u); err == nil {
		fmt.Fprintln(os.Stderr, "(opened a browser)")
	}
	if !(ru.Scheme == "http" && isLoopbackHost(ru.Hostname())) {
		fmt.Fprintln(os.Stderr, "Then paste the full URL you were redirected to, and press Enter:")
	} else {
		fmt.Fprintf(os.Stderr, "Waiting for the redirect to %s ...\n", *redirect)
	}
	var r result
	select {
	case r = <-codes:
	case <-ctx.Done():
		return fmt.Errorf("no login within %v", *timeout)
	}
	if r.err != nil {
		return r.err
	}
	c, err := d.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Admin().SeedToken(ctx, &pb.SeedTokenRequest{
		Connection: *conn,
		Credential: &pb.SeedTokenRequest_AuthorizationCode{AuthorizationCode: &pb.AuthorizationCode{
			Code: r.code, CodeVerifier: verifier, RedirectUri: *redirect,
		}},
	})
	if err != nil {
		return fmt.Errorf("seeding %s: %w", *conn, err)
	}
	fmt.Fprintf(os.Stderr, "Logged in: connection %q is seeded.\n\n", *conn)
	printStatus(os.Stdout, []*pb.Connection{resp.GetConnection()}, nil, time.Now())
	return nil
}

type result struct {
	code string
	err  error
}

// codeFrom takes the code out of a redirect's query, checking the state.
func codeFrom(q url.Values, state string) result {
	if e := q.Get("error"); e != "" {
		return result{err: fmt.Errorf("the provider refused the login: %s %s", e, q.Get("error_description"))}
	}
	if q.Get("state") != state {
		return result{err: errors.New("the redirect's state does not match this login (a stale or forged redirect)")}
	}
	if q.Get("code") == "" {
		return result{err: errors.New("the redirect carries no code")}
	}
	return result{code: q.Get("code")}
}

func serveCallback(ctx context.Context, ru *url.URL, state string, out chan<- result) (func(), error) {
	lis, err := net.Listen("tcp", ru.Host)
	if err != nil {
		return nil, fmt.Errorf("listening for the redirect on %s: %w", ru.Host, err)
	}
	path := ru.Path
	if path == "" {
		path = "/"
	}
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		res := codeFrom(r.URL.Query(), state)
		if res.err != nil {
			http.Error(w, "Login failed: "+res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Login complete. You may close this tab and return to the terminal.")
		}
		select {
		case out <- res:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}

func readPasted(in io.Reader, state string, out chan<- result) {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		out <- result{err: errors.New("no redirect URL was pasted")}
		return
	}
	u, perr := url.Parse(strings.TrimSpace(line))
	if perr != nil {
		out <- result{err: errors.New("that is not a URL")}
		return
	}
	out <- codeFrom(u.Query(), state)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// connectionFromConfig finds a connection in a config file (secrets are not
// needed for a login and are not read).
func connectionFromConfig(path, name string) (broker.ConnectionConfig, error) {
	f, err := config.Load(path)
	if err != nil {
		return broker.ConnectionConfig{}, err
	}
	c, ok := f.Conn(name)
	if !ok {
		return broker.ConnectionConfig{}, fmt.Errorf("%s has no connection %q", path, name)
	}
	return c.Config().WithDefaults(), nil
}
