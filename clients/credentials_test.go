package clients_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/clients"
	"github.com/tokenbroker/tokenbroker/clients/clientstest"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/proto/tokenbroker/v1"
)

// The tests use a second fake broker as the gRPC upstream that receives the
// token, and read what arrived with a metadataRecorder.

func TestPerRPCCredentials(t *testing.T) {
	broker := startBroker(t, clientstest.WithConnection("adobe-prod", "client-id"))
	creds := clients.PerRPCCredentials(dial(t, broker).TokenSource("adobe-prod"))
	if !creds.RequireTransportSecurity() {
		t.Fatal("RequireTransportSecurity = false")
	}

	pki := newTestPKI(t)
	var rec metadataRecorder
	up := startBroker(t, clientstest.WithConnection("upstream", ""), rec.option(),
		clientstest.WithServerOptions(grpc.Creds(credentials.NewTLS(pki.serverTLS(t, false)))))
	conn, err := grpc.NewClient(up.Addr(),
		grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pki.pool, "")),
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := tokenbrokerv1.NewTokenBrokerClient(conn).GetToken(context.Background(), &tokenbrokerv1.GetTokenRequest{Connection: "upstream"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.get("authorization"); len(got) != 1 || got[0] != "Bearer adobe-prod-access-1" {
		t.Errorf("authorization = %q", got)
	}
	if got := rec.get("x-api-key"); len(got) != 1 || got[0] != "client-id" {
		t.Errorf("x-api-key = %q", got)
	}
}

func TestPerRPCCredentialsRefuseInsecure(t *testing.T) {
	broker := startBroker(t, clientstest.WithConnection("adobe-prod", ""))
	creds := clients.PerRPCCredentials(dial(t, broker).TokenSource("adobe-prod"))
	var rec metadataRecorder
	up := startBroker(t, clientstest.WithConnection("upstream", ""), rec.option())

	// As a dial option: gRPC refuses to create the connection.
	if conn, err := grpc.NewClient(up.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds)); err == nil {
		conn.Close()
		t.Fatal("grpc.NewClient accepted token credentials on a plaintext connection")
	}

	// As a call option: the call fails before anything is sent.
	conn, err := grpc.NewClient(up.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = tokenbrokerv1.NewTokenBrokerClient(conn).GetToken(context.Background(),
		&tokenbrokerv1.GetTokenRequest{Connection: "upstream"}, grpc.PerRPCCredentials(creds))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "insecure") {
		t.Fatalf("call with token credentials over plaintext = %v, want UNAUTHENTICATED", err)
	}
	if n := up.Calls("GetToken"); n != 0 {
		t.Errorf("upstream handled %d calls, want 0", n)
	}
	if n := broker.Calls("GetToken"); n != 0 {
		t.Errorf("a token was fetched (%d GetToken) for an insecure call", n)
	}
}
