// Package component runs the long-running parts of a Sublet process (the
// host cluster, a control plane, the syncer, the agent, the platform
// server, DNS, the warm pool) the same way in `sublet up`, `sublet vcluster
// run` and the agent: started one after the other, each ready before the
// next starts, all stopped when one fails or the process is told to stop,
// the last started first, and every error named after its part.
package component

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// A Component is one long-running part.
type Component struct {
	// Name names it in errors: "NAME: what failed".
	Name string
	// Run runs it until ctx ends and returns nil then, or returns the
	// error that stopped it. It calls ready (once) when the components
	// started after it may start; a Run that never calls it is taken to be
	// ready once it started.
	Run func(ctx context.Context, ready func()) error
	// NoReadiness: the component is ready as soon as Run is called.
	NoReadiness bool
}

// Group runs components; the zero value is not usable: use NewGroup.
type Group struct {
	ctx    context.Context
	failed chan error // the first component that returned early

	mu      sync.Mutex
	running []*running
}

type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// NewGroup returns a Group whose components run until ctx ends or one of
// them fails.
func NewGroup(ctx context.Context) *Group {
	return &Group{ctx: ctx, failed: make(chan error, 1)}
}

// Start starts c and waits until it is ready. An error of c before that,
// of a component started before it, or ctx ending is returned (an error
// with its component's name); c then no longer runs.
func (g *Group) Start(c Component) error {
	if err := g.ctx.Err(); err != nil {
		return err
	}
	// Its own context, not one of g.ctx: when g.ctx ends, Stop ends the
	// components in order.
	ctx, cancel := context.WithCancel(context.WithoutCancel(g.ctx))
	r := &running{name: c.Name, cancel: cancel, done: make(chan struct{})}
	ready := make(chan struct{})
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	if c.NoReadiness {
		markReady()
	}
	go func() {
		defer close(r.done)
		err := c.Run(ctx, markReady)
		if err == nil && ctx.Err() == nil {
			err = errors.New("stopped unexpectedly")
		}
		if err != nil && ctx.Err() == nil {
			r.err = fmt.Errorf("%s: %w", c.Name, err)
			select {
			case <-ready: // failed while running: Wait reports it
				select {
				case g.failed <- r.err:
				default:
				}
			default: // failed starting: Start reports it
			}
		}
	}()
	select {
	case <-ready:
	case <-r.done:
		cancel()
		if r.err != nil {
			return r.err
		}
		return g.ctx.Err()
	case <-g.ctx.Done():
		cancel()
		<-r.done
		return g.ctx.Err()
	case err := <-g.failed: // one started before failed: give up on c
		g.failed <- err // for Wait
		cancel()
		<-r.done
		return err
	}
	g.mu.Lock()
	g.running = append(g.running, r)
	g.mu.Unlock()
	return nil
}

// Wait waits until ctx ends (nil) or a component fails (its error); then
// Stop stops them all.
func (g *Group) Wait() error {
	select {
	case <-g.ctx.Done():
		return nil
	case err := <-g.failed:
		return err
	}
}

// Stop stops the running components, the last started first, each before
// the next, and returns their errors.
func (g *Group) Stop() error {
	g.mu.Lock()
	rs := g.running
	g.running = nil
	g.mu.Unlock()
	var errs []error
	for i := len(rs) - 1; i >= 0; i-- {
		rs[i].cancel()
		<-rs[i].done
		if rs[i].err != nil {
			errs = append(errs, rs[i].err)
		}
	}
	return errors.Join(errs...)
}

// Interrupted is nil when err says only that ctx ended (the process was
// told to stop while a component started), else err.
func Interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}
