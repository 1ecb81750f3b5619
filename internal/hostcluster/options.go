// Package hostcluster runs a local host cluster: the embedded control plane
// with kube-scheduler, plus nodes and pods simulated by KWOK, so workloads get
// scheduled, become Running and answer kubectl logs and exec.
package hostcluster

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/sublet-dev/sublet/internal/controlplane"
)

// maxNodes bounds --nodes: each node gets a /24 out of PodCIDR.
const maxNodes = 250

// Options configures a local host cluster.
type Options struct {
	ControlPlane *controlplane.Options
	// Nodes is how many simulated nodes the cluster has.
	Nodes int
	// PodCIDR is split into one /24 per node for pod IPs.
	PodCIDR string
	// Exec lets kubectl exec run the command as a process on this machine
	// (as an unprivileged user when sublet runs as root). Off by default:
	// a tenant's pod must not run commands on the platform's machine.
	Exec bool
}

// NewOptions returns defaults: two nodes, exec answered with an error.
func NewOptions() *Options {
	cp := controlplane.NewOptions()
	cp.Mode = controlplane.ModeHost
	return &Options{ControlPlane: cp, Nodes: 2, PodCIDR: "10.244.0.0/16"}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.ControlPlane.AddFlags(fs)
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "Number of simulated nodes.")
	fs.StringVar(&o.PodCIDR, "pod-cidr", o.PodCIDR, "Pod IP range, a /16 split into one /24 per node.")
	fs.BoolVar(&o.Exec, "simulate-exec", o.Exec, "Run the commands of kubectl exec into simulated pods as real processes on THIS machine (as user nobody when run as root). Anyone who may exec into a pod, tenants of virtual clusters included, then runs commands here; off, exec answers with an error and runs nothing.")
}

// Complete fills in derived values.
func (o *Options) Complete() error {
	o.ControlPlane.Mode = controlplane.ModeHost
	return o.ControlPlane.Complete()
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	if err := o.ControlPlane.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Nodes < 1 || o.Nodes > maxNodes {
		errs = append(errs, fmt.Errorf("--nodes %d is out of range 1-%d", o.Nodes, maxNodes))
	}
	if _, err := nodePodCIDR(o.PodCIDR, 0); err != nil {
		errs = append(errs, fmt.Errorf("--pod-cidr: %w", err))
	}
	return errors.Join(errs...)
}
