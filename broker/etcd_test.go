package broker_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/seal"
	"github.com/tokenbroker/tokenbroker/broker/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestEtcdStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		prefix := newPrefix()
		return storetest.Harness{
			Store: broker.NewEtcdStore(etcd.Client, prefix, seal.Generate("k1")),
			NewFence: func(t *testing.T) (broker.Fence, func()) {
				key := prefix + "fence"
				resp, err := etcd.Client.Put(context.Background(), key, "x")
				if err != nil {
					t.Fatal(err)
				}
				return broker.Fence{Key: key, CreateRevision: resp.Header.Revision}, func() {
					if _, err := etcd.Client.Delete(context.Background(), key); err != nil {
						t.Fatal(err)
					}
				}
			},
			Compact: func(t *testing.T) {
				resp, err := etcd.Client.Get(context.Background(), "compact-marker")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := etcd.Client.Compact(context.Background(), resp.Header.Revision); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

// TestEtcdStoreSealsTokens dumps the keyspace and finds no plaintext token,
// and shows that a replica without the key gets a clear reason.
func TestEtcdStoreSealsTokens(t *testing.T) {
	ctx := context.Background()
	prefix := newPrefix()
	keys := seal.Generate("k1")
	s := broker.NewEtcdStore(etcd.Client, prefix, keys)
	if _, err := s.Put(ctx, "a", broker.Record{Generation: 1, AccessToken: "plain-access-token", RefreshToken: "plain-refresh-token"}, broker.Cond{}); err != nil {
		t.Fatal(err)
	}
	resp, err := etcd.Client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		for _, secret := range []string{"plain-access-token", "plain-refresh-token"} {
			if bytes.Contains(kv.Value, []byte(secret)) {
				t.Fatalf("key %s holds %s in plaintext", kv.Key, secret)
			}
		}
	}
	other := broker.NewEtcdStore(etcd.Client, prefix, seal.Generate("k2"))
	v, err := other.Load(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if v.Unreadable == "" || v.Record.AccessToken != "" || !bytes.Contains([]byte(v.Unreadable), []byte(`"k1"`)) {
		t.Fatalf("record under a missing key: unreadable %q, token %q", v.Unreadable, v.Record.AccessToken)
	}
	// A ciphertext copied to another connection does not open there.
	raw := resp.Kvs[0].Value
	if _, err := etcd.Client.Put(ctx, prefix+"records/b", string(raw)); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Load(ctx, "b"); v.Unreadable == "" {
		t.Fatal("a record copied to another connection opened")
	}
}

// TestRekey: after a new primary key, Rekey re-seals every record with it, so
// a keyring holding only the new key opens them.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	prefix := newPrefix()
	f1, err := seal.NewKeyFile(seal.File{}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := f1.Keyring()
	s1 := broker.NewEtcdStore(etcd.Client, prefix, k1)
	for _, name := range []string{"a", "b"} {
		if _, err := s1.Put(ctx, name, broker.Record{Generation: 1, AccessToken: "at-" + name, RefreshToken: "rt-" + name}, broker.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	f2, err := seal.NewKeyFile(f1, "k2")
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := f2.Keyring()
	n, err := broker.NewEtcdStore(etcd.Client, prefix, k2).Rekey(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Rekey: %d records, %v", n, err)
	}
	onlyK2, _ := seal.File{Primary: "k2", Keys: map[string]string{"k2": f2.Keys["k2"]}}.Keyring()
	for _, name := range []string{"a", "b"} {
		v, err := broker.NewEtcdStore(etcd.Client, prefix, onlyK2).Load(ctx, name)
		if err != nil || v.Unreadable != "" || v.Record.AccessToken != "at-"+name || v.Record.RefreshToken != "rt-"+name {
			t.Fatalf("%s after rekey under k2 alone: %q %v", name, v.Unreadable, err)
		}
	}
	if n, err := broker.NewEtcdStore(etcd.Client, prefix, k2).Rekey(ctx); err != nil || n != 0 {
		t.Fatalf("second Rekey: %d, %v (want nothing left to do)", n, err)
	}
}
