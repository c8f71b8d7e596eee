package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tokenbroker/tokenbroker/broker/seal"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdStore is the Store on etcd. Tokens are sealed with the keyring before
// they leave the process; the additional data binds each ciphertext to its
// connection and field.
type EtcdStore struct {
	cli    *clientv3.Client
	prefix string // ends in "/"
	keys   *seal.Keyring
}

var _ Store = (*EtcdStore)(nil)

// NewEtcdStore returns a store of records under prefix (for example
// "/tokenbroker/").
func NewEtcdStore(cli *clientv3.Client, prefix string, keys *seal.Keyring) *EtcdStore {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &EtcdStore{cli: cli, prefix: prefix + "records/", keys: keys}
}

// storedRecord is the JSON layout in etcd.
type storedRecord struct {
	Record
	Access  *seal.Sealed `json:"access_token,omitempty"`
	Refresh *seal.Sealed `json:"refresh_token,omitempty"`
}

func aad(name, field string) string { return "tokenbroker/v1/records/" + name + "/" + field }

func (s *EtcdStore) key(name string) string { return s.prefix + name }

func (s *EtcdStore) encode(name string, rec Record) ([]byte, error) {
	sr := storedRecord{Record: rec}
	if rec.AccessToken != "" {
		v := s.keys.Seal([]byte(rec.AccessToken), aad(name, "access_token"))
		sr.Access = &v
	}
	if rec.RefreshToken != "" {
		v := s.keys.Seal([]byte(rec.RefreshToken), aad(name, "refresh_token"))
		sr.Refresh = &v
	}
	return json.Marshal(sr)
}

func (s *EtcdStore) decode(name string, raw []byte, rev int64) Versioned {
	var sr storedRecord
	if err := json.Unmarshal(raw, &sr); err != nil {
		return Versioned{Revision: rev, Unreadable: "record is not valid JSON"}
	}
	v := Versioned{Record: sr.Record, Revision: rev}
	open := func(sealed *seal.Sealed, field string) string {
		if sealed == nil {
			return ""
		}
		pt, err := s.keys.Open(*sealed, aad(name, field))
		if err != nil {
			if errors.Is(err, seal.ErrUnknownKey) {
				v.Unreadable = fmt.Sprintf("%s is sealed with key %q, which this replica's keyring lacks", field, sealed.KeyID)
			} else if v.Unreadable == "" {
				v.Unreadable = field + " does not open with the keyring (tampered or copied from another record)"
			}
			return ""
		}
		return string(pt)
	}
	v.Record.AccessToken = open(sr.Access, "access_token")
	v.Record.RefreshToken = open(sr.Refresh, "refresh_token")
	if v.Unreadable != "" {
		v.Record.AccessToken, v.Record.RefreshToken = "", ""
	}
	return v
}

// Stale reports whether the raw record is sealed with a key other than the
// primary one (it is re-sealed on its next write, or by Rekey).
func (s *EtcdStore) stale(raw []byte) bool {
	var sr storedRecord
	if json.Unmarshal(raw, &sr) != nil {
		return false
	}
	return (sr.Access != nil && s.keys.Stale(*sr.Access)) || (sr.Refresh != nil && s.keys.Stale(*sr.Refresh))
}

// Load implements Store.
func (s *EtcdStore) Load(ctx context.Context, name string) (Versioned, error) {
	resp, err := s.cli.Get(ctx, s.key(name))
	if err != nil {
		return Versioned{}, storeErr(err)
	}
	if len(resp.Kvs) == 0 {
		return Versioned{}, nil
	}
	kv := resp.Kvs[0]
	return s.decode(name, kv.Value, kv.ModRevision), nil
}

// LoadAll implements Store.
func (s *EtcdStore) LoadAll(ctx context.Context) (map[string]Versioned, int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, storeErr(err)
	}
	out := make(map[string]Versioned, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), s.prefix)
		out[name] = s.decode(name, kv.Value, kv.ModRevision)
	}
	return out, resp.Header.Revision, nil
}

// Watch implements Store. The watch requires an etcd leader, so a member cut
// off from its peers cancels it instead of staying silent.
func (s *EtcdStore) Watch(ctx context.Context, rev int64, fn func(name string, v Versioned)) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wresp := range wch {
		if wresp.CompactRevision != 0 {
			return fmt.Errorf("%w: at %d", ErrCompacted, wresp.CompactRevision)
		}
		if err := wresp.Err(); err != nil {
			return storeErr(err)
		}
		for _, ev := range wresp.Events {
			name := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
			if ev.Type == clientv3.EventTypeDelete {
				fn(name, Versioned{})
				continue
			}
			fn(name, s.decode(name, ev.Kv.Value, ev.Kv.ModRevision))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: watch closed", ErrStoreUnavailable)
}

// Put implements Store.
func (s *EtcdStore) Put(ctx context.Context, name string, rec Record, cond Cond) (int64, error) {
	raw, err := s.encode(name, rec)
	if err != nil {
		return 0, err
	}
	key := s.key(name)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", cond.Revision)}
	if cond.Fence != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(cond.Fence.Key), "=", cond.Fence.CreateRevision))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(raw))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return 0, storeErr(err)
	}
	if !resp.Succeeded {
		if cond.Fence != nil {
			// Tell a lost election from a changed record.
			got := resp.Responses[0].GetResponseRange().Kvs
			cur := int64(0)
			if len(got) > 0 {
				cur = got[0].ModRevision
			}
			if cur == cond.Revision {
				return 0, ErrFenced
			}
		}
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

// Rekey re-seals every record whose tokens are sealed with a key other than
// the primary one. It returns how many it re-sealed.
func (s *EtcdStore) Rekey(ctx context.Context) (int, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, storeErr(err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		if !s.stale(kv.Value) {
			continue
		}
		name := strings.TrimPrefix(string(kv.Key), s.prefix)
		v := s.decode(name, kv.Value, kv.ModRevision)
		if v.Unreadable != "" {
			return n, fmt.Errorf("%s: %s", name, v.Unreadable)
		}
		if _, err := s.Put(ctx, name, v.Record, Cond{Revision: kv.ModRevision}); err != nil {
			return n, fmt.Errorf("%s: %w", name, err)
		}
		n++
	}
	return n, nil
}

// storeErr wraps an etcd client error as ErrStoreUnavailable, keeping context
// errors as they are.
func storeErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}
