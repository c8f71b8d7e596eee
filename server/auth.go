package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	pb "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Permission is what a caller may do with a connection.
type Permission string

// The permissions.
const (
	PermToken Permission = "token" // GetToken, Invalidate
	PermCall  Permission = "call"  // CallAnalytics
	PermAdmin Permission = "admin" // Admin service
)

// Access lists the callers granted each permission on one connection; "*"
// grants it to every authenticated caller.
type Access struct {
	Token, Call, Admin []string
}

// Policy says who callers are and what they may do.
type Policy struct {
	// Disabled turns authentication off: every caller may do everything.
	// Only for the demo on loopback; the server logs a warning.
	Disabled bool
	// APIKeys maps the hex SHA-256 of an API key to the caller's name.
	APIKeys map[string]string
	// Access is per connection.
	Access map[string]Access
	// ReflectionRequiresAuth puts server reflection behind authentication.
	ReflectionRequiresAuth bool
}

// Identity is an authenticated caller.
type Identity struct {
	Name string
	Via  string // "mtls", "api_key" or "none"
}

type identityKey struct{}

// IdentityFrom returns the caller's identity.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// HashAPIKey is the hex SHA-256 under which an API key is configured.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// authenticate is the auth interceptor's function: a verified client
// certificate, else an API key in `authorization: Bearer ...`.
func (p *Policy) authenticate(ctx context.Context) (context.Context, error) {
	if p.Disabled {
		return context.WithValue(ctx, identityKey{}, Identity{Name: "anonymous", Via: "none"}), nil
	}
	if name := certIdentity(ctx); name != "" {
		return context.WithValue(ctx, identityKey{}, Identity{Name: name, Via: "mtls"}), nil
	}
	key, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, newStatus(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
			"no credentials: present a client certificate or an API key as 'authorization: Bearer <key>'", nil)
	}
	sum := HashAPIKey(key)
	for hash, name := range p.APIKeys {
		if subtle.ConstantTimeCompare([]byte(hash), []byte(sum)) == 1 {
			return context.WithValue(ctx, identityKey{}, Identity{Name: name, Via: "api_key"}), nil
		}
	}
	return nil, newStatus(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_UNAUTHENTICATED, "unknown API key", nil)
}

// certIdentity names the caller by its verified certificate: the first URI
// SAN (such as a SPIFFE ID), else the first DNS SAN, else the common name.
func certIdentity(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return ""
	}
	cert := ti.State.VerifiedChains[0][0]
	switch {
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	default:
		return cert.Subject.CommonName
	}
}

// authorize checks that the caller holds perm on connection.
func (p *Policy) authorize(ctx context.Context, connection string, perm Permission) error {
	if p.Disabled {
		return nil
	}
	id, ok := IdentityFrom(ctx)
	if !ok {
		return newStatus(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_UNAUTHENTICATED, "not authenticated", nil)
	}
	if p.allowed(id.Name, connection, perm) {
		return nil
	}
	return newStatus(codes.PermissionDenied, pb.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
		fmt.Sprintf("caller %q lacks permission %q on connection %q", id.Name, perm, connection),
		map[string]string{"caller": id.Name, "permission": string(perm), "connection": connection})
}

func (p *Policy) allowed(caller, connection string, perm Permission) bool {
	a, ok := p.Access[connection]
	if !ok {
		return false
	}
	var list []string
	switch perm {
	case PermToken:
		list = a.Token
	case PermCall:
		list = a.Call
	case PermAdmin:
		list = a.Admin
	}
	return slices.Contains(list, caller) || slices.Contains(list, "*")
}
