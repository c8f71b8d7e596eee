package clients

import (
	"context"
	"fmt"

	"google.golang.org/grpc/credentials"
)

// PerRPCCredentials returns gRPC call credentials that send the tokens of ts
// to a gRPC upstream: "authorization: <type> <token>" and, when the connection
// has one, "x-api-key". They require transport security: gRPC refuses to use
// them on a plaintext connection.
func PerRPCCredentials(ts *TokenSource) credentials.PerRPCCredentials {
	return tokenCredentials{ts: ts}
}

type tokenCredentials struct{ ts *TokenSource }

var _ credentials.PerRPCCredentials = tokenCredentials{}

func (c tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	// gRPC checks RequireTransportSecurity itself; check again in case the
	// credentials are called some other way.
	if ri, ok := credentials.RequestInfoFromContext(ctx); ok {
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("clients: refusing to send a token over an insecure connection: %w", err)
		}
	}
	tok, err := c.ts.CurrentContext(ctx)
	if err != nil {
		return nil, err
	}
	md := map[string]string{"authorization": tok.authType() + " " + tok.AccessToken}
	if tok.APIKey != "" {
		md["x-api-key"] = tok.APIKey
	}
	return md, nil
}

func (tokenCredentials) RequireTransportSecurity() bool { return true }

// apiKeyCredentials authenticate the calls to the broker with an API key.
type apiKeyCredentials struct {
	key        string
	requireTLS bool // false only for WithInsecure to a loopback target
}

func (c apiKeyCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.key}, nil
}

func (c apiKeyCredentials) RequireTransportSecurity() bool { return c.requireTLS }
