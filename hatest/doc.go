// Package hatest holds the high-availability acceptance tests of the broker:
// etcd members and broker replicas run as real processes (see
// internal/cluster) and the tests inject real faults (SIGKILL, SIGSTOP,
// quorum loss, a crash between the identity provider's answer and the etcd
// write) while callers use the public gRPC API. README.md sums up what each
// fault does and what is lost.
package hatest
