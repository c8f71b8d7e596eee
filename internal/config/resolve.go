package config

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/tokenbroker/tokenbroker/broker"
)

// maxSecretSize bounds a secret file: anything larger is not one.
const maxSecretSize = 64 << 10

// Broker validates f and returns what the broker needs, with each
// connection's client secret read from its file (surrounding white space
// trimmed) or environment variable. Its error is Problems: every invalid
// field, or every secret that cannot be resolved. Errors name the file or
// variable, never the secret.
func (f *File) Broker() (broker.Config, error) {
	if ps := f.Validate(); len(ps) > 0 {
		return broker.Config{}, ps
	}
	cfg := broker.Config{Timing: f.Timing.Broker().WithDefaults()}
	var probs Problems
	for i, c := range f.Connections {
		prefix := fmt.Sprintf("connections[%d].", i)
		bc := c.Config()
		secret, p := resolveSecret(prefix, "client_secret_file", c.ClientSecretFile, "client_secret_env", c.ClientSecretEnv)
		if p != nil {
			probs = append(probs, *p)
		}
		bc.ClientSecret = secret
		cfg.Connections = append(cfg.Connections, bc)
	}
	if len(probs) > 0 {
		return broker.Config{}, probs
	}
	if err := cfg.Validate(); err != nil { // already checked field by field; a safety net
		return broker.Config{}, err
	}
	return cfg, nil
}

// Password resolves the etcd password from password_file or password_env;
// "" when neither is set. Its error is a Problem naming the file or variable,
// never the password.
func (e Etcd) Password() (string, error) {
	s, p := resolveSecret("etcd.", "password_file", e.PasswordFile, "password_env", e.PasswordEnv)
	if p != nil {
		return "", Problems{*p}
	}
	return s, nil
}

// resolveSecret reads a secret from a file or the environment. The problem
// it returns names where it looked, never what it found.
func resolveSecret(prefix, fileField, file, envField, env string) (string, *Problem) {
	var raw, where, path string
	switch {
	case file != "":
		path, where = prefix+fileField, "file "+file
		fh, err := os.Open(file)
		if err != nil {
			return "", &Problem{Path: path, Message: "cannot read the secret: " + err.Error()}
		}
		defer fh.Close()
		b, err := io.ReadAll(io.LimitReader(fh, maxSecretSize+1))
		if err != nil {
			return "", &Problem{Path: path, Message: "cannot read the secret: " + err.Error()}
		}
		if len(b) > maxSecretSize {
			return "", &Problem{Path: path, Message: fmt.Sprintf("%s is larger than %d bytes: not a secret file", where, maxSecretSize)}
		}
		raw = string(b)
	case env != "":
		path, where = prefix+envField, "environment variable "+env
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", &Problem{Path: path, Message: where + " is not set"}
		}
		raw = v
	default:
		return "", nil
	}
	secret := strings.TrimSpace(raw)
	switch {
	case secret == "":
		return "", &Problem{Path: path, Message: where + " is empty"}
	case strings.ContainsFunc(secret, unicode.IsControl):
		return "", &Problem{Path: path, Message: where + " holds more than one line or control characters: it must hold the secret alone"}
	}
	return secret, nil
}
