package clients

import (
	"context"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// A TokenSourceOption configures a [TokenSource].
type TokenSourceOption func(*TokenSource)

// WithMargin sets how long before its expiry a cached token is fetched again
// from the broker. The default is one minute.
func WithMargin(d time.Duration) TokenSourceOption {
	return func(ts *TokenSource) { ts.margin = d }
}

// WithClock sets the clock the cache is judged by. The default is time.Now.
func WithClock(now func() time.Time) TokenSourceOption {
	return func(ts *TokenSource) { ts.now = now }
}

// WithFetchTimeout bounds each call to the broker. A call is shared by all
// the callers that need it at once, so it does not run under any one caller's
// context; each caller still stops waiting when its own context ends. The
// default is 30 seconds.
func WithFetchTimeout(d time.Duration) TokenSourceOption {
	return func(ts *TokenSource) { ts.fetchTimeout = d }
}

// TokenSource caches the token of one connection and fetches it from the
// broker when the cached one comes within the margin of its expiry. Callers
// that need a token at the same time share one call to the broker. It is safe
// for concurrent use and implements oauth2.TokenSource.
//
// The broker refreshes tokens ahead of their expiry, so a cached token is
// normally replaced long before it enters the margin. A token the broker serves
// while its own refresh fails may already be inside the margin: it is used, and
// every use asks the broker again, until the broker has a newer one. If the
// broker cannot be asked, a cached token that has not expired yet is returned
// rather than the error.
type TokenSource struct {
	client       *Client
	connection   string
	margin       time.Duration
	now          func() time.Time
	fetchTimeout time.Duration

	mu           sync.Mutex
	tok          *Token // nil until the first fetch, or after a failed Invalidate
	generation   uint64 // the greatest generation seen
	fetching     *call
	invalidating map[uint64]*call
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// call is one request to the broker that several callers wait for.
type call struct {
	done chan struct{}
	tok  *Token
	err  error
}

func (c *call) wait(ctx context.Context) (*Token, error) {
	select {
	case <-c.done:
		if c.err != nil {
			return nil, c.err
		}
		t := *c.tok
		return &t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NewTokenSource returns a TokenSource of connection that asks the broker
// through c.
func NewTokenSource(c *Client, connection string, opts ...TokenSourceOption) *TokenSource {
	ts := &TokenSource{
		client:       c,
		connection:   connection,
		margin:       time.Minute,
		now:          time.Now,
		fetchTimeout: 30 * time.Second,
		invalidating: make(map[uint64]*call),
	}
	for _, opt := range opts {
		opt(ts)
	}
	return ts
}

// Connection returns the name of the connection.
func (ts *TokenSource) Connection() string { return ts.connection }

// Generation returns the greatest generation this source has seen, or 0 before
// the first token.
func (ts *TokenSource) Generation() uint64 {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.generation
}

// Token implements oauth2.TokenSource. See [Token.OAuth2] for its extras.
func (ts *TokenSource) Token() (*oauth2.Token, error) {
	t, err := ts.Current()
	if err != nil {
		return nil, err
	}
	return t.OAuth2(), nil
}

// Current returns the cached token, or fetches one if the cached one is within
// the margin of its expiry. It is CurrentContext with context.Background.
func (ts *TokenSource) Current() (*Token, error) {
	return ts.CurrentContext(context.Background())
}

// CurrentContext is Current that stops waiting when ctx ends. The values of ctx
// (for example gRPC metadata) go with the call to the broker, if this caller
// starts it.
func (ts *TokenSource) CurrentContext(ctx context.Context) (*Token, error) {
	ts.mu.Lock()
	if ts.tok.freshAt(ts.now(), ts.margin) {
		t := *ts.tok
		ts.mu.Unlock()
		return &t, nil
	}
	c := ts.fetching
	if c == nil {
		c = &call{done: make(chan struct{})}
		ts.fetching = c
		go ts.run(ctx, c, func(ctx context.Context) (*Token, error) {
			return ts.client.GetToken(ctx, ts.connection, 0)
		}, func() {
			ts.fetching = nil
			// A token inside the margin still works: better than an error.
			if c.err != nil && ts.tok != nil && ts.now().Before(ts.tok.Expiry) {
				c.tok, c.err = ts.tok, nil
			}
		})
	}
	ts.mu.Unlock()
	return c.wait(ctx)
}

// Invalidate reports that an upstream rejected the token of generation and
// returns a newer token, which replaces the cached one. If the source already
// holds a newer token, it returns it without asking the broker; reports of one
// generation made at the same time share one call to the broker. If the broker
// fails, a cached token of that generation or older is dropped, so the next
// Current asks the broker again.
func (ts *TokenSource) Invalidate(ctx context.Context, generation uint64, reason string) (*Token, error) {
	ts.mu.Lock()
	if ts.tok != nil && ts.tok.Generation > generation {
		t := *ts.tok
		ts.mu.Unlock()
		return &t, nil
	}
	c := ts.invalidating[generation]
	if c == nil {
		c = &call{done: make(chan struct{})}
		ts.invalidating[generation] = c
		go ts.run(ctx, c, func(ctx context.Context) (*Token, error) {
			return ts.client.Invalidate(ctx, ts.connection, generation, reason)
		}, func() {
			delete(ts.invalidating, generation)
			if c.err != nil && ts.tok != nil && ts.tok.Generation <= generation {
				ts.tok = nil
			}
		})
	}
	ts.mu.Unlock()
	return c.wait(ctx)
}

// run makes the shared call c with the values of ctx, but not its deadline or
// cancellation, and at most fetchTimeout; it stores the result, runs done
// under the lock, and wakes the waiters.
func (ts *TokenSource) run(ctx context.Context, c *call, fetch func(context.Context) (*Token, error), done func()) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ts.fetchTimeout)
	defer cancel()
	c.tok, c.err = fetch(ctx)

	ts.mu.Lock()
	defer ts.mu.Unlock()
	if c.err == nil {
		// Generations only grow: a slower call that brings an older token
		// does not replace a newer one.
		if ts.tok == nil || c.tok.Generation >= ts.tok.Generation {
			ts.tok = c.tok
		}
		ts.generation = max(ts.generation, c.tok.Generation)
		if ts.tok.Generation > c.tok.Generation {
			c.tok = ts.tok
		}
	}
	done()
	close(c.done)
}
