package broker

import "context"

// Store keeps the records of connections. Every write is a compare-and-swap:
// a read-modify-write without a compare does not exist here.
type Store interface {
	// Load reads one record, linearizably. A missing record is not an error:
	// it comes back with Revision 0.
	Load(ctx context.Context, name string) (Versioned, error)
	// LoadAll reads every record and the store revision they were read at.
	LoadAll(ctx context.Context) (map[string]Versioned, int64, error)
	// Watch calls fn, in order, for every change after revision rev until ctx
	// ends or the watch breaks; it returns ErrCompacted when rev is gone.
	Watch(ctx context.Context, rev int64, fn func(name string, v Versioned)) error
	// Put writes rec if the record's revision is still cond.Revision (0: it
	// must not exist) and, if cond.Fence is set, the fence still holds. It
	// returns the new revision, ErrConflict or ErrFenced.
	Put(ctx context.Context, name string, rec Record, cond Cond) (int64, error)
}

// Cond is the condition of a Put.
type Cond struct {
	Revision int64
	Fence    *Fence
}

// Fence holds while the key exists with this create revision: the shape of
// an etcd election key that is still ours.
type Fence struct {
	Key            string
	CreateRevision int64
}
