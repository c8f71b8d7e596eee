package clients_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/clients/clientstest"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// analyticsAPI stands for Adobe Analytics: it answers with the caller's
// company if the token is the broker's current one, and 401 if not.
func analyticsAPI(broker *clientstest.Server) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+broker.Token("adobe-prod").GetAccessToken() {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error_code":"401013","message":"Oauth token is not valid"}`)
			return
		}
		fmt.Fprintf(w, `{"imsOrgs":[{"companies":[{"globalCompanyId":"acme"}]}],"x-api-key":%q}`, r.Header.Get("X-Api-Key"))
	}))
}

// The happy path: a service gets an http.Client whose requests carry the
// connection's token.
func Example() {
	broker, err := clientstest.Start(clientstest.WithConnection("adobe-prod", "my-client-id"))
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	api := analyticsAPI(broker)
	defer api.Close()

	// In production: clients.Dial("broker.internal:8443", clients.WithTLSFiles(ca, cert, key)).
	c, err := clients.Dial(broker.Addr(), clients.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ts := c.TokenSource("adobe-prod")
	hc := &http.Client{Transport: clients.NewTransport(ts, nil)}
	resp, err := hc.Get(api.URL + "/discovery/me")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Println(string(body))
	// Output:
	// 200 OK
	// {"imsOrgs":[{"companies":[{"globalCompanyId":"acme"}]}],"x-api-key":"my-client-id"}
}

// When the upstream rejects a token, the Transport reports its generation to
// the broker and sends the request again with the newer token.
func ExampleTransport() {
	broker, err := clientstest.Start(clientstest.WithConnection("adobe-prod", "my-client-id"))
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	api := analyticsAPI(broker)
	defer api.Close()

	c, err := clients.Dial(broker.Addr(), clients.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ts := c.TokenSource("adobe-prod")
	if _, err := ts.Current(); err != nil { // the source now holds generation 1
		log.Fatal(err)
	}
	// The broker moves to generation 2, and the upstream accepts only that
	// one; the source still holds generation 1.
	broker.Rotate("adobe-prod")

	hc := &http.Client{Transport: clients.NewTransport(ts, nil)}
	req, _ := http.NewRequest(http.MethodPost, api.URL+"/api/acme/reports", strings.NewReader(`{"rsid":"acmeprod"}`))
	resp, err := hc.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, "with generation", ts.Generation())
	// Output: 200 OK with generation 2
}

// Errors match sentinels by the broker's reason, and keep their gRPC status.
func ExampleReason() {
	broker, err := clientstest.Start(
		clientstest.WithConnection("adobe-prod", ""),
		clientstest.WithServerOptions(grpc.UnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
			return nil, clientstest.Error(codes.FailedPrecondition, tokenbrokerv1.ErrorReason_ERROR_REASON_NEEDS_REAUTH, "the identity provider answered invalid_grant")
		})))
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	c, err := clients.Dial(broker.Addr(), clients.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.GetToken(context.Background(), "adobe-prod", 0)
	fmt.Println(errors.Is(err, clients.ErrNeedsReauth), errors.Is(err, clients.ErrFailedPrecondition))
	fmt.Println(clients.Reason(err))
	fmt.Println(err)
	// Output:
	// true true
	// ERROR_REASON_NEEDS_REAUTH
	// tokenbroker: FailedPrecondition (ERROR_REASON_NEEDS_REAUTH): the identity provider answered invalid_grant
}

// A Token prints and logs with a fingerprint in place of the secret.
func ExampleToken_String() {
	tok := clients.Token{Connection: "adobe-prod", AccessToken: "abc", TokenType: "Bearer", Generation: 7}
	fmt.Println(tok)
	// Output: Token{connection=adobe-prod generation=7 type=Bearer fingerprint=ba7816bf expiry=none}
}
