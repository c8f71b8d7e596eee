// Command tokenbroker runs the token broker and talks to it.
//
//	tokenbroker demo                      embedded etcd + fake Adobe + broker on loopback
//	tokenbroker serve --config FILE       run a replica
//	tokenbroker status [--addr ADDR]      table of connections
//	tokenbroker seed --connection NAME    store a refresh token (read from stdin)
//	tokenbroker config check FILE         list every problem of a config file
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `tokenbroker: one place that holds OAuth 2.0 credentials and hands out tokens.

Usage:
  tokenbroker demo [--listen 127.0.0.1:7443] [--replicas N]
  tokenbroker serve --config FILE [--data-dir DIR]
  tokenbroker status [--addr 127.0.0.1:7443] [--api-key-file F] [--tls-ca F]
  tokenbroker seed --connection NAME [--addr ...] < refresh-token
  tokenbroker login --connection NAME [--addr ...] [--config FILE]
  tokenbroker config check FILE
  tokenbroker rekey --config FILE
  tokenbroker keygen [--id ID] [--keyring FILE]
  tokenbroker apikey
  tokenbroker storm [--addrs A,B,C] [--callers 300]

Run 'tokenbroker COMMAND -h' for the flags of a command.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "demo":
		err = runDemo(ctx, args)
	case "serve":
		err = runServe(ctx, args)
	case "status":
		err = runStatus(ctx, args)
	case "seed":
		err = runSeed(ctx, args)
	case "login":
		err = runLogin(ctx, args)
	case "config":
		err = runConfig(ctx, args)
	case "rekey":
		err = runRekey(ctx, args)
	case "keygen":
		err = runKeygen(args)
	case "apikey":
		err = runAPIKey(args)
	case "storm":
		err = runStorm(ctx, args)
	case "version":
		fmt.Println(version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "tokenbroker: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenbroker:", err)
		os.Exit(1)
	}
}
