// Package broker is the domain of the token broker: connections and their
// tokens, the etcd store they live in, the leader that refreshes them, the
// in-memory cache that serves them and the calls made with them. It knows
// nothing of gRPC: package server translates RPCs to the methods of Broker.
//
// The guarantees it keeps are those of DESIGN.md: one refresh per generation
// across all replicas (the leader claims a refresh in a transaction fenced by
// its election key and the record's revision), stored before served (callers
// only ever see a token the cache read back from etcd), monotonic generations,
// refresh ahead of expiry, classified errors, and no refresh loops.
package broker
