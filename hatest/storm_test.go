package hatest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeadobe"
	"github.com/tokenbroker/tokenbroker/internal/cluster"
)

// TestStorm: 300 callers spread over three replica processes report the same
// generation at once. The identity provider sees exactly one refresh and
// every caller gets the next generation.
func TestStorm(t *testing.T) {
	etcd := cluster.StartEtcd(t, 1)
	adobe := cluster.StartAdobe(t, fakeadobe.Options{})
	rs := cluster.StartReplicas(t, etcd, 3, config(adobe))
	rs.MustLeader(waitLong)
	seed(t, rs, 1, adobe)
	for i := range 3 {
		waitGen(t, rs, i, 1)
	}
	adobe.ResetStats()

	const callers = 300
	var h cluster.History
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	t0 := time.Now()
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := c % 3
			start := time.Now()
			tok, err := rs.Client(i).Invalidate(ctx, conn, 1, "401 from the storm")
			switch {
			case err != nil:
				errs <- fmt.Sprintf("caller %d (replica %d): %v", c, i, err)
			case tok.Generation != 2:
				errs <- fmt.Sprintf("caller %d (replica %d): generation %d, want 2", c, i, tok.Generation)
			default:
				h.Add(i, "Invalidate", start, tok)
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for e := range errs {
		if n++; n <= 10 {
			t.Error(e)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d callers did not get generation 2", n, callers)
	}
	t.Logf("%d callers got generation 2 in %s", callers, since(t0))
	checkAdobe(t, adobe, 1)
	h.Check(t)
}
