package vcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/sublet-dev/sublet/internal/exitcode"
)

// A warm control plane (`vcluster run --await-assignment FILE`) is started
// before any virtual cluster asks for one: its own PKI, service-account key
// and datastore, bootstrapped, serving nothing but its defaults. It runs no
// syncer, DNS or kubelet proxy and holds no host credentials until the
// agent writes FILE: the `vcluster run` arguments of the virtual cluster it
// becomes, one per line. Only AssignableFlags may appear there: they place
// the cluster in the host and configure the syncer and the egress guard,
// never the control plane, so a warm control plane taken by a virtual
// cluster is the one a fresh start with the same arguments would have
// made. Until then its egress guard refuses every dial.

// AssignableFlags are the `vcluster run` flags an assignment may set.
var AssignableFlags = []string{"name", "host-namespace", "host-kubeconfig", "sync", "disable-sync-resources", "pod-security-standard", "isolation-policy", "egress-allowed-cidrs",
	"custom-resources", "from-host-selector"}

// awaitAssignment blocks until o.AwaitAssignment exists, then applies it.
func (o *Options) awaitAssignment(ctx context.Context, log klog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(o.AwaitAssignment)); err != nil {
		return fmt.Errorf("watch for the assignment: %w", err)
	}
	log.Info("warm control plane waiting for a virtual cluster", "assignment", o.AwaitAssignment)
	for {
		data, err := os.ReadFile(o.AwaitAssignment)
		if err == nil {
			return o.assign(strings.Split(strings.TrimSpace(string(data)), "\n"))
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-w.Errors:
			return fmt.Errorf("watch for the assignment: %w", err)
		case <-w.Events:
		}
	}
}

// assign parses an assignment's arguments into o.
func (o *Options) assign(args []string) error {
	fs := pflag.NewFlagSet("assignment", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return exitcode.Configf("assignment %s: %v", o.AwaitAssignment, err)
	}
	var refused []string
	fs.Visit(func(f *pflag.Flag) {
		if !slices.Contains(AssignableFlags, f.Name) {
			refused = append(refused, "--"+f.Name)
		}
	})
	if len(refused) > 0 || fs.NArg() > 0 {
		return exitcode.Configf("assignment %s sets what a warm control plane cannot change: %s", o.AwaitAssignment, strings.Join(append(refused, fs.Args()...), " "))
	}
	o.AwaitAssignment = ""
	return exitcode.ConfigErr(o.validateLocal())
}
