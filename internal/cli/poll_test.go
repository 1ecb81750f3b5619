package cli

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPoll: Ctrl-C ends a wait even while its condition is in a request
// that never answers; running out of time and a condition's own error are
// told apart from it.
func TestPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan struct{})
	go func() {
		<-entered
		cancel() // the user's Ctrl-C, while cond waits
	}()
	err := poll(ctx, time.Millisecond, time.Hour, func(ctx context.Context) (bool, error) {
		close(entered)
		<-ctx.Done() // a request that only the context ends
		return false, nil
	})
	if !errors.Is(err, errInterrupted) {
		t.Errorf("interrupted wait: %v, want errInterrupted", err)
	}

	calls := 0
	err = poll(context.Background(), time.Millisecond, 20*time.Millisecond, func(context.Context) (bool, error) {
		calls++
		return false, nil
	})
	if !errors.Is(err, errTimedOut) || calls < 2 {
		t.Errorf("wait past its time: %v after %d calls, want errTimedOut after several", err, calls)
	}

	boom := errors.New("boom")
	if err := poll(context.Background(), time.Millisecond, time.Hour, func(context.Context) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("failing condition: %v, want its error", err)
	}
	if err := poll(context.Background(), time.Hour, time.Hour, func(context.Context) (bool, error) { return true, nil }); err != nil {
		t.Errorf("a condition met at once: %v", err)
	}
}
