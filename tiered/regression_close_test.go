package tiered_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// Client.Close closes every cache's ristretto while Sets (and Gets, Deletes)
// that passed the closed check are still writing to L1: only loader calls are
// tracked (Client.loads), not the L1 writes after them. ristretto's Close is
// not safe against concurrent Set/Del/Wait: a Wait enqueued after Close
// stopped ristretto's processor blocks forever (holding the fill-guard stripe
// lock, so the stripe's other writers block too), and a Set or Del that sends
// after Close closed setBuf panics. It is a race, so the test repeats the
// scenario (Sets released from their Writer as Close starts); on the 2-core
// machine the first round already hangs, and -race reports ristretto's
// close(setBuf) racing a Wait's send. The stuck goroutines stay behind, so
// goleak also fails the package.
func TestReviewCloseDuringWrites(t *testing.T) {
	for round := range 200 {
		c, err := tiered.NewClient(context.Background(), tiered.Config{Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		var entered sync.WaitGroup
		cache, err := tiered.NewCache(c, "users", tiered.Options[string]{Writer: func(context.Context, string, string) error {
			entered.Done()
			<-release
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 300 {
			entered.Add(1)
			wg.Go(func() { _ = cache.Set(context.Background(), strconv.Itoa(i), "v") })
		}
		entered.Wait()
		close(release)
		_ = c.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second): // a failure bound, not synchronisation
			t.Fatalf("round %d: Sets racing Client.Close are stuck in ristretto's Wait", round)
		}
	}
}
