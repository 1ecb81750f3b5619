package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/kubeversion"
)

// TestPoolAssignment: which virtual clusters may take a warm control plane,
// and what the member is told.
func TestPoolAssignment(t *testing.T) {
	p := &warmPool{serviceCIDR: "10.96.0.0/16"}
	base := []string{"vcluster", "run", "--name", "a", "--host-namespace", "team-a", "--host-kubeconfig", "/s/host.kubeconfig", "--data-dir", "/s/data"}
	minor := strings.Join(strings.SplitN(kubeversion.Binary(), ".", 3)[:2], ".")
	for _, tc := range []struct {
		extra []string
		ok    bool
		want  []string
	}{
		{nil, true, nil},
		{[]string{"--sync=poddisruptionbudgets", "--disable-sync-resources=ingresses", "--pod-security-standard=restricted"}, true,
			[]string{"--sync=poddisruptionbudgets", "--disable-sync-resources=ingresses", "--pod-security-standard=restricted"}},
		// What members run with anyway.
		{[]string{"--service-cidr=10.96.0.0/16", "--datastore=sqlite", "--kubernetes-version=" + minor}, true, nil},
		// What changes the control plane.
		{[]string{"--service-cidr=10.100.0.0/16"}, false, nil},
		{[]string{"--datastore=etcd"}, false, nil},
		{[]string{"--kubernetes-version=v1.10"}, false, nil},
		{[]string{"--apiserver-arg=--audit-log-maxage=3"}, false, nil},
	} {
		got, ok := p.assignment(append(slices.Clone(base), tc.extra...))
		want := append([]string{"--name=a", "--host-namespace=team-a", "--host-kubeconfig=/s/host.kubeconfig"}, tc.want...)
		if ok != tc.ok || (ok && !slices.Equal(got, want)) {
			t.Errorf("extra %v: got %v %v, want %v %v", tc.extra, got, ok, want, tc.ok)
		}
	}
}
