// Package seal encrypts secrets at rest with AES-256-GCM under a keyring.
//
// Every sealed value records the id of the key that sealed it, so keys can
// rotate: add a key, make it primary, and values are sealed with it from their
// next write on while older values still open with the key they name. The
// additional data binds a ciphertext to where it belongs (a connection and a
// field), so a ciphertext copied to another record or field does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
)

// KeySize is the size of an AES-256 key.
const KeySize = 32

// ErrUnknownKey means a value was sealed with a key this keyring lacks.
var ErrUnknownKey = errors.New("seal: sealed with a key that is not in the keyring")

// ErrOpen means a value did not open: wrong key, wrong additional data, or tampering.
var ErrOpen = errors.New("seal: value does not open (tampered, or bound to another record)")

// Sealed is an encrypted value and the id of the key that sealed it.
type Sealed struct {
	KeyID string `json:"kid"`
	// Data is the nonce followed by the ciphertext and tag.
	Data []byte `json:"data"`
}

// Keyring holds named AES-256 keys, one of them primary.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

var keyID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// New returns a keyring of keys by id; primary names the key that seals.
func New(primary string, keys map[string][]byte) (*Keyring, error) {
	k := &Keyring{primary: primary, aeads: make(map[string]cipher.AEAD, len(keys))}
	var problems []error
	for id, key := range keys {
		if !keyID.MatchString(id) {
			problems = append(problems, fmt.Errorf("key id %q: use letters, digits, '.', '_' or '-' (at most 64)", id))
			continue
		}
		if len(key) != KeySize {
			problems = append(problems, fmt.Errorf("key %q: is %d bytes, want %d", id, len(key), KeySize))
			continue
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			problems = append(problems, fmt.Errorf("key %q: %w", id, err))
			continue
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			problems = append(problems, fmt.Errorf("key %q: %w", id, err))
			continue
		}
		k.aeads[id] = aead
	}
	if _, ok := keys[primary]; !ok {
		problems = append(problems, fmt.Errorf("primary key %q is not in the keyring", primary))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return k, nil
}

// Generate returns a keyring with one random key, for demos and tests.
func Generate(id string) *Keyring {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	k, err := New(id, map[string][]byte{id: key})
	if err != nil {
		panic(err)
	}
	return k
}

// Primary is the id of the key that seals.
func (k *Keyring) Primary() string { return k.primary }

// IDs lists the key ids, sorted.
func (k *Keyring) IDs() []string {
	ids := make([]string, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Seal encrypts plaintext with the primary key, bound to aad.
func (k *Keyring) Seal(plaintext []byte, aad string) Sealed {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return Sealed{KeyID: k.primary, Data: aead.Seal(nonce, nonce, plaintext, []byte(aad))}
}

// Open decrypts s, which must have been sealed with the same aad.
func (k *Keyring) Open(s Sealed, aad string) ([]byte, error) {
	aead, ok := k.aeads[s.KeyID]
	if !ok {
		return nil, fmt.Errorf("%w (key id %q)", ErrUnknownKey, s.KeyID)
	}
	if len(s.Data) < aead.NonceSize() {
		return nil, ErrOpen
	}
	nonce, ct := s.Data[:aead.NonceSize()], s.Data[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, []byte(aad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Stale reports whether s was sealed with a key other than the primary.
func (k *Keyring) Stale(s Sealed) bool { return s.KeyID != k.primary }

// File is the keyring file format (JSON or YAML-compatible JSON):
//
//	{"primary": "2026-11", "keys": {"2026-10": "<base64 of 32 bytes>", "2026-11": "<base64>"}}
type File struct {
	Primary string            `json:"primary"`
	Keys    map[string]string `json:"keys"`
}

// Load reads a keyring file. The file holds keys: keep it readable only by the broker.
func Load(path string) (*Keyring, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var f File
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("keyring %s: not valid JSON: %w", path, err)
	}
	return f.Keyring()
}

// Keyring decodes the file's keys.
func (f File) Keyring() (*Keyring, error) {
	keys := make(map[string][]byte, len(f.Keys))
	var problems []error
	for id, b64 := range f.Keys {
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			problems = append(problems, fmt.Errorf("key %q: not base64", id))
			continue
		}
		keys[id] = key
	}
	if len(f.Keys) == 0 {
		problems = append(problems, errors.New("keyring has no keys"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k, err := New(f.Primary, keys)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return k, nil
}

// NewKeyFile returns a File with one new random key as primary, or adds one to
// f and makes it primary (key rotation).
func NewKeyFile(f File, id string) (File, error) {
	if !keyID.MatchString(id) {
		return f, fmt.Errorf("key id %q: use letters, digits, '.', '_' or '-'", id)
	}
	if _, dup := f.Keys[id]; dup {
		return f, fmt.Errorf("key id %q exists already", id)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return f, err
	}
	out := File{Primary: id, Keys: map[string]string{id: base64.StdEncoding.EncodeToString(key)}}
	for k, v := range f.Keys {
		out.Keys[k] = v
	}
	return out, nil
}
