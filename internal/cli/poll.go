package cli

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// errInterrupted is what a wait returns when the user interrupted it
// (Ctrl-C), as opposed to running out of time.
var errInterrupted = errors.New("interrupted")

// errTimedOut is what poll returns when its time ran out; callers say
// what they waited for.
var errTimedOut = errors.New("timed out")

// poll calls cond at once and then every interval until it reports done or
// an error, for at most timeout. Every wait of the CLI goes through it, so
// each ends on Ctrl-C (ctx cancelled: errInterrupted), even while cond is
// in a request, and each says when its time ran out (errTimedOut).
func poll(ctx context.Context, interval, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, cond)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errInterrupted
	case wait.Interrupted(err):
		return errTimedOut
	default:
		return err
	}
}
