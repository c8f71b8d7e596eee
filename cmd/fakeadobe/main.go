// Command fakeadobe runs the bundled fake of Adobe IMS and of the Analytics
// 2.0 API (package fakeadobe) on a listener, for demos and external tests.
//
//	fakeadobe --listen 127.0.0.1:8181 --token-lifetime 1h --latency 50ms
//
// Faults are injected over HTTP under /_fake/ (see package fakeadobe), for
// example:
//
//	curl -X POST 'http://127.0.0.1:8181/_fake/revoke?what=access'
//	curl -X POST 'http://127.0.0.1:8181/_fake/fail?endpoint=token&n=3&status=503'
//	curl -X POST 'http://127.0.0.1:8181/_fake/login'   # a refresh token to seed the broker
//
// It never logs tokens or the client secret.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeadobe"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakeadobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8181", "address to listen on")
	tokenLifetime := fs.Duration("token-lifetime", fakeadobe.DefaultTokenLifetime, "access token lifetime")
	refreshLifetime := fs.Duration("refresh-token-lifetime", fakeadobe.DefaultRefreshTokenLifetime, "refresh token lifetime, counted from the login")
	latency := fs.Duration("latency", 0, "delay added to every token-endpoint call")
	clientID := fs.String("client-id", fakeadobe.DefaultClientID, "accepted client id (also the required x-api-key)")
	clientSecret := fs.String("client-secret", "", "accepted client secret (default $FAKEADOBE_CLIENT_SECRET, else "+fakeadobe.DefaultClientSecret+")")
	company := fs.String("company", fakeadobe.DefaultCompanyID, "global company id")
	fixed := fs.Bool("fixed-refresh-tokens", false, "do not rotate refresh tokens (default: rotate, and revoke the used one at once)")
	refreshOut := fs.String("write-refresh-token", "", "write a freshly issued refresh token to this file (mode 0600), as if a user had just logged in")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fakeadobe: unexpected arguments %q\n", fs.Args())
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	secret := *clientSecret
	if secret == "" {
		secret = os.Getenv("FAKEADOBE_CLIENT_SECRET")
	}
	fa := fakeadobe.New(fakeadobe.Options{
		ClientID:             *clientID,
		ClientSecret:         secret,
		CompanyID:            *company,
		TokenLifetime:        *tokenLifetime,
		RefreshTokenLifetime: *refreshLifetime,
		Latency:              *latency,
		FixedRefreshTokens:   *fixed,
	})
	if *refreshOut != "" {
		if err := writeSecretFile(*refreshOut, fa.IssueRefreshToken()+"\n"); err != nil {
			log.Error("cannot write the refresh token file", "path", *refreshOut, "err", err)
			return 1
		}
		log.Info("wrote a refresh token", "path", *refreshOut)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot listen", "addr", *listen, "err", err)
		return 1
	}
	srv := &http.Server{
		Handler:           fa,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	base := "http://" + ln.Addr().String()
	log.Info("fake Adobe listening",
		"url", base,
		"token_url", base+fakeadobe.TokenPathV3,
		"authorize_url", base+fakeadobe.AuthorizePath,
		"analytics_base", base+fakeadobe.APIPrefix+fa.CompanyID(),
		"discovery_url", base+fakeadobe.DiscoveryPath,
		"client_id", fa.ClientID(),
		"company", fa.CompanyID(),
		"token_lifetime", tokenLifetime.String(),
		"rotate_refresh_tokens", !*fixed,
	)

	select {
	case err := <-serveErr:
		log.Error("server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	stop()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown did not finish cleanly", "err", err)
		_ = srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("server stopped", "err", err)
		return 1
	}
	return 0
}

// writeSecretFile writes data to path with mode 0600, atomically.
func writeSecretFile(path, data string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".fakeadobe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
