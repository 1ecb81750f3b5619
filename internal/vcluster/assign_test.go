package vcluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/exitcode"
)

// TestAssign: a warm control plane takes its name, host namespace and
// syncer settings from the assignment, and refuses anything that would
// change the control plane it already runs.
func TestAssign(t *testing.T) {
	o := NewOptions()
	o.AwaitAssignment = "/pool/x/assignment"
	if err := o.validateLocal(); err != nil {
		t.Fatalf("a warm control plane needs no name yet: %v", err)
	}
	if err := o.assign([]string{"--name=demo", "--host-namespace=team-a", "--host-kubeconfig=/pool/x/host.kubeconfig", "--sync=poddisruptionbudgets", "--pod-security-standard=restricted",
		"--egress-allowed-cidrs=10.20.0.0/16,127.0.0.1/32"}); err != nil {
		t.Fatal(err)
	}
	if o.Name != "demo" || o.HostNamespace != "team-a" || o.HostKubeconfig != "/pool/x/host.kubeconfig" || o.PodSecurityStandard != "restricted" || len(o.Sync) != 1 ||
		strings.Join(o.EgressAllowedCIDRs, ",") != "10.20.0.0/16,127.0.0.1/32" {
		t.Errorf("assigned options: %+v", o)
	}
	for _, args := range [][]string{
		{"--name=demo", "--host-namespace=team-a", "--datastore=etcd"},
		{"--name=demo", "--host-namespace=team-a", "--apiserver-arg=--v=9"},
		{"--name=demo", "--host-namespace=team-a", "--service-cidr=10.0.0.0/16"},
		{"--name=demo", "--host-namespace=team-a", "extra"},
		{"--name=demo", "--host-namespace=team-a", "--no-such-flag"},
		{"--name=Demo!", "--host-namespace=team-a"},
		{"--name=demo", "--host-namespace=team-a", "--egress-allowed-cidrs=10.20.0.0"},
		{"--host-namespace=team-a"}, // no name
	} {
		o := NewOptions()
		o.AwaitAssignment = "/pool/x/assignment"
		err := o.assign(args)
		var ce *exitcode.ConfigError
		if err == nil || !errors.As(err, &ce) {
			t.Errorf("assignment %s: %v, want a configuration error", strings.Join(args, " "), err)
		}
	}
}
