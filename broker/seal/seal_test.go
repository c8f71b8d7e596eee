package seal

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpenRotate(t *testing.T) {
	f1, err := NewKeyFile(File{}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	k1, err := f1.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	s := k1.Seal([]byte("secret-token"), "conn/a/access")
	if bytes.Contains(s.Data, []byte("secret-token")) {
		t.Fatal("ciphertext holds the plaintext")
	}
	if got, err := k1.Open(s, "conn/a/access"); err != nil || string(got) != "secret-token" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k1.Open(s, "conn/b/access"); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open with other aad: %v, want ErrOpen", err)
	}
	s.Data[len(s.Data)-1] ^= 1
	if _, err := k1.Open(s, "conn/a/access"); !errors.Is(err, ErrOpen) {
		t.Fatalf("Open tampered: %v, want ErrOpen", err)
	}

	// Rotation: a new primary seals, the old key still opens.
	old := k1.Seal([]byte("v1"), "x")
	f2, err := NewKeyFile(f1, "k2")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := f2.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Stale(old) {
		t.Fatal("value sealed by k1 not stale under primary k2")
	}
	if got, err := k2.Open(old, "x"); err != nil || string(got) != "v1" {
		t.Fatalf("old value under rotated keyring: %q, %v", got, err)
	}
	if s := k2.Seal([]byte("v2"), "x"); s.KeyID != "k2" {
		t.Fatalf("sealed with %q, want k2", s.KeyID)
	}
	// A keyring without k1 says which key is missing.
	k3 := Generate("k3")
	if _, err := k3.Open(old, "x"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open with missing key: %v", err)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	raw, _ := json.Marshal(File{Primary: "missing", Keys: map[string]string{"short": "AAAA", "bad id!": "AAAA", "nb64": "%%%"}})
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load accepted a broken keyring")
	}
	for _, want := range []string{`"nb64": not base64`} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	f, _ := NewKeyFile(File{}, "good")
	raw, _ = json.Marshal(f)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load(path)
	if err != nil || k.Primary() != "good" {
		t.Fatalf("Load good keyring: %v", err)
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New("nope", map[string][]byte{"short": make([]byte, 16), "bad id!": make([]byte, 32)})
	if err == nil {
		t.Fatal("New accepted bad keys")
	}
	for _, want := range []string{`"short": is 16 bytes`, `"bad id!"`, `primary key "nope"`} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
