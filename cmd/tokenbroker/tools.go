package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/internal/config"
	"github.com/tokenbroker/tokenbroker/server"
)

// runConfig: `config check FILE` lists every problem of a config file.
func runConfig(_ context.Context, args []string) error {
	if len(args) != 2 || args[0] != "check" {
		return errors.New("usage: tokenbroker config check FILE")
	}
	_, err := config.Load(args[1])
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Printf("%s: %d problem(s)\n", args[1], len(ps))
			for _, p := range ps {
				fmt.Printf("  %s: %s\n", p.Path, p.Message)
			}
			return fmt.Errorf("%s is not valid", args[1])
		}
		return err
	}
	fmt.Printf("%s: ok\n", args[1])
	return nil
}

// runRekey re-seals every record whose tokens use a key other than the
// keyring's primary one.
func runRekey(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rekey", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(f.Log.Format, f.Log.Level)
	keys, err := loadKeyring(f, log)
	if err != nil {
		return err
	}
	cli, closeEtcd, err := etcdClient(ctx, f, log)
	if err != nil {
		return err
	}
	defer closeEtcd()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := broker.NewEtcdStore(cli, f.Etcd.Prefix, keys).Rekey(ctx)
	fmt.Printf("re-sealed %d record(s) with key %q\n", n, keys.Primary())
	return err
}

// runKeygen creates a keyring file, or adds a new primary key to one.
func runKeygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	path := fs.String("keyring", "keyring.json", "keyring file to create or rotate")
	id := fs.String("id", time.Now().UTC().Format("2006-01-02"), "id of the new key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*path); errors.Is(err, os.ErrNotExist) {
		if err := writeNewKeyring(*path, *id); err != nil {
			return err
		}
		fmt.Printf("created %s with primary key %q\n", *path, *id)
		return nil
	}
	raw, err := os.ReadFile(*path)
	if err != nil {
		return err
	}
	var f seal.File
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	nf, err := seal.NewKeyFile(f, *id)
	if err != nil {
		return err
	}
	if err := writeJSON(*path, nf); err != nil {
		return err
	}
	fmt.Printf("added key %q to %s and made it primary; roll it out to every replica, then run 'tokenbroker rekey'\n", *id, *path)
	return nil
}

func writeNewKeyring(path, id string) error {
	f, err := seal.NewKeyFile(seal.File{}, id)
	if err != nil {
		return err
	}
	return writeJSON(path, f)
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// runAPIKey makes a new random API key and prints it with the hash that goes
// into the config.
func runAPIKey(args []string) error {
	fs := flag.NewFlagSet("apikey", flag.ContinueOnError)
	name := fs.String("name", "my-service", "caller name for the config entry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	key := "tbk_" + base64.RawURLEncoding.EncodeToString(b)
	fmt.Printf("API key (give it to the caller; it is shown once):\n  %s\n\nconfig entry:\n  auth:\n    api_keys:\n      - name: %s\n        sha256: %s\n", key, *name, server.HashAPIKey(key))
	return nil
}
