package component

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder notes the order in which components stop.
type recorder struct {
	mu      sync.Mutex
	stopped []string
}

func (r *recorder) component(name string) Component {
	return Component{Name: name, Run: func(ctx context.Context, ready func()) error {
		ready()
		<-ctx.Done()
		r.mu.Lock()
		r.stopped = append(r.stopped, name)
		r.mu.Unlock()
		return nil
	}}
}

// TestGroupStopsInReverse: components stop the last started first, each
// after the one started after it has returned.
func TestGroupStopsInReverse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := NewGroup(ctx)
	r := &recorder{}
	for _, name := range []string{"host", "agent", "server"} {
		if err := g.Start(r.component(name)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Errorf("Wait after the context ended: %v", err)
	}
	if err := g.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if want := []string{"server", "agent", "host"}; !slices.Equal(r.stopped, want) {
		t.Errorf("stopped %v, want %v", r.stopped, want)
	}
}

// TestGroupErrorsNameTheirComponent: a failure while starting is Start's
// error, one while running is Wait's, each with the component's name; a
// component whose Run returns nil before the group stops is a failure too.
func TestGroupErrorsNameTheirComponent(t *testing.T) {
	g := NewGroup(context.Background())
	defer g.Stop()
	boom := errors.New("boom")
	err := g.Start(Component{Name: "host cluster", Run: func(context.Context, func()) error { return boom }})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "host cluster: ") {
		t.Errorf("a failure while starting: %v", err)
	}

	fail := make(chan struct{})
	if err := g.Start(Component{Name: "agent", Run: func(ctx context.Context, ready func()) error {
		ready()
		<-fail
		return boom
	}}); err != nil {
		t.Fatal(err)
	}
	close(fail)
	if err := g.Wait(); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "agent: ") {
		t.Errorf("a failure while running: %v", err)
	}

	g2 := NewGroup(context.Background())
	defer g2.Stop()
	if err := g2.Start(Component{Name: "dns", NoReadiness: true, Run: func(context.Context, func()) error {
		time.Sleep(10 * time.Millisecond)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := g2.Wait(); err == nil || !strings.HasPrefix(err.Error(), "dns: stopped unexpectedly") {
		t.Errorf("a component that returned early: %v", err)
	}
}

// TestGroupStartEndsWithContext: a component that never gets ready does not
// hold Start once the context ends.
func TestGroupStartEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := NewGroup(ctx)
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	err := g.Start(Component{Name: "slow", Run: func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start after the context ended: %v", err)
	}
}

// TestGroupStartEndsWhenAnEarlierOneFails: a component waiting to be ready
// (a warm control plane waiting for its assignment) does not hold Start
// when one started before it fails.
func TestGroupStartEndsWhenAnEarlierOneFails(t *testing.T) {
	g := NewGroup(context.Background())
	defer g.Stop()
	boom := errors.New("boom")
	fail := make(chan struct{})
	if err := g.Start(Component{Name: "control plane", Run: func(ctx context.Context, ready func()) error {
		ready()
		<-fail
		return boom
	}}); err != nil {
		t.Fatal(err)
	}
	go close(fail)
	err := g.Start(Component{Name: "waiting", Run: func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "control plane: ") {
		t.Errorf("Start while an earlier component fails: %v", err)
	}
	if err := g.Wait(); !errors.Is(err, boom) {
		t.Errorf("Wait: %v", err)
	}
	if err := Interrupted(context.Background(), err); err == nil {
		t.Error("Interrupted dropped a real error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Interrupted(ctx, fmt.Errorf("start: %w", ctx.Err())); err != nil {
		t.Errorf("Interrupted kept the context's end: %v", err)
	}
}
