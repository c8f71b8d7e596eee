// Package clients is what Go services import to use the token broker: a
// connection to it ([Dial]), a cached, shared source of a connection's access
// tokens ([TokenSource], an oauth2.TokenSource), an http.RoundTripper that
// authenticates requests and renews a token an upstream rejects ([Transport]),
// gRPC call credentials ([PerRPCCredentials]), and errors that match sentinels
// by the broker's reasons ([ErrNeedsReauth], [Reason], ...).
//
// The happy path:
//
//	c, err := clients.Dial("broker.internal:8443", clients.WithTLSFiles(ca, cert, key))
//	defer c.Close()
//	ts := c.TokenSource("adobe-prod")
//	hc := &http.Client{Transport: clients.NewTransport(ts, nil)}
//	resp, err := hc.Get("https://analytics.adobe.io/discovery/me")
//
// When the upstream answers 401, the Transport reports the token's generation
// to the broker, which refreshes it once however many callers report it, and
// sends the request again with the new token.
//
// The package depends on the generated tokenbroker.v1 protos, gRPC and
// golang.org/x/oauth2, never on the broker or etcd; a test keeps it so.
// Package clientstest has a fake broker for the tests of services that use it.
package clients
