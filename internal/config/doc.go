// Package config reads the broker's configuration file. Only cmd/ loads it:
// the broker and the server take plain Go values (broker.Config,
// server.Policy) built from a File.
//
// The file is YAML, converted to JSON and decoded into File by the json tags
// of its fields (sigs.k8s.io/yaml). Decoding is strict: unknown fields,
// duplicate keys and values of the wrong type are problems, and so is an
// inline secret (client_secret, etcd password, an API key in clear): secrets
// come from files or environment variables only, so that a committed config
// never holds one. examples/tokenbroker.yaml explains every field.
//
// Parse reports every problem at once, each with the path of its field, such
// as "connections[0].client_secret_file: ...". It starts from Default, decodes
// the file over it (so a key given explicitly, even as "", wins), applies
// WithDefaults for the values derived from others, and runs Validate.
//
// A field given as null (or with no value) is "" or 0 for a scalar, which
// for most fields means the default (metrics_listen: "" turns the metrics
// server off), and keeps the defaults for a section such as etcd: or timing:.
//
// Access lists name callers: API key names (auth.api_keys[].name) or
// certificate identities (first URI SAN, else DNS SAN, else common name);
// "*" is every authenticated caller. Names that match no configured caller
// are not problems: certificate identities are not listed anywhere.
//
// Validate never reads secret files; Broker does, and its errors name the
// file or environment variable but never the secret. Relative paths in the
// file are relative to the working directory of the process.
package config
