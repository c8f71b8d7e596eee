// Package server is the gRPC face of the broker: the TokenBroker and Admin
// services, the interceptor chain (logging, authentication, recovery), and
// the one table that maps the broker's errors to gRPC status codes with a
// google.rpc.ErrorInfo detail whose reason is an ErrorReason name.
package server
