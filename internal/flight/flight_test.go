package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOverlappingCallersShareOneCall(t *testing.T) {
	var joined sync.WaitGroup
	joined.Add(50)
	g := Group[int]{Joined: joined.Done}
	var calls atomic.Int64
	release := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		calls.Add(1)
		<-release
		return 7, nil
	}
	var wg sync.WaitGroup
	results := make(chan int, 50)
	for range 50 {
		wg.Go(func() {
			v, _ := g.Do(context.Background(), "k", time.Second, fn)
			results <- v
		})
	}
	joined.Wait() // every caller is in, and the call cannot end before release
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != 7 {
			t.Errorf("a caller got %d, want 7", v)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1", n)
	}
}

func TestACallerGivingUpDoesNotCancelTheCall(t *testing.T) {
	var g Group[string]
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	go func() {
		_, err := g.Do(ctx, "k", time.Minute, func(fctx context.Context) (string, error) {
			<-release
			done <- fctx.Err()
			return "late", nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the caller that gave up got %v, want context.Canceled", err)
		}
	}()
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the call's context ended with the caller's: %v", err)
	}
}

func TestTheCallIsBoundedByItsTimeout(t *testing.T) {
	var g Group[int]
	_, err := g.Do(context.Background(), "k", 10*time.Millisecond, func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want DeadlineExceeded", err)
	}
}
