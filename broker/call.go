package broker

import (
	"context"

	"github.com/tokenbroker/tokenbroker/broker/apiproxy"
)

// tokens adapts the broker to what the API proxy needs.
type tokens struct{ b *Broker }

func (t tokens) Token(ctx context.Context, name string) (apiproxy.Credential, error) {
	tok, err := t.b.GetToken(ctx, name, 0)
	return apiproxy.Credential{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Generation: tok.Generation}, err
}

func (t tokens) Invalidate(ctx context.Context, name string, gen uint64, reason string) (apiproxy.Credential, error) {
	tok, err := t.b.Invalidate(ctx, name, gen, reason)
	return apiproxy.Credential{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Generation: tok.Generation}, err
}

// Call sends one request to the connection's API with its credentials; on a
// 401 it reports the generation used and retries once with the new token.
func (b *Broker) Call(ctx context.Context, name string, req apiproxy.Request) (apiproxy.Response, error) {
	c, err := b.conn(name)
	if err != nil {
		return apiproxy.Response{}, err
	}
	target := apiproxy.Target{BaseURL: c.cfg.APIBaseURL, APIKey: c.cfg.APIKey, Headers: map[string]string{}}
	for k, v := range c.cfg.Headers {
		target.Headers[k] = v
	}
	if c.cfg.GlobalCompanyID != "" {
		target.Headers["x-proxy-global-company-id"] = c.cfg.GlobalCompanyID
	}
	return b.proxy.Call(ctx, name, target, req)
}
