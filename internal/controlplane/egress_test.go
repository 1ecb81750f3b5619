package controlplane

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/server/egressselector"
	"k8s.io/klog/v2"
)

// TestEgressSelectorConfig: the API server reads the configuration as
// meant: the cluster and controlplane networks through the guard's
// socket, the datastore direct.
func TestEgressSelectorConfig(t *testing.T) {
	data, err := egressSelectorConfig("/run/guard/proxy.sock")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "egress.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := egressselector.ReadEgressSelectorConfiguration(file)
	if err != nil {
		t.Fatal(err)
	}
	if errs := egressselector.ValidateEgressSelectorConfiguration(cfg); len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	got := map[string]apiserverapi.Connection{}
	for _, s := range cfg.EgressSelections {
		got[s.Name] = s.Connection
	}
	for _, name := range []string{"cluster", "controlplane"} {
		c := got[name]
		if c.ProxyProtocol != apiserverapi.ProtocolHTTPConnect || c.Transport == nil || c.Transport.UDS == nil || c.Transport.UDS.UDSName != "/run/guard/proxy.sock" {
			t.Errorf("%s network: %+v, want HTTPConnect over the guard's socket", name, c)
		}
	}
	if c := got["etcd"]; c.ProxyProtocol != apiserverapi.ProtocolDirect {
		t.Errorf("etcd network: %+v, want direct", c)
	}
}

func TestEgressSelectorFlag(t *testing.T) {
	for _, tc := range []struct {
		mode   Mode
		socket string
		want   bool
	}{{ModeVirtual, "/run/guard/proxy.sock", true}, {ModeVirtual, "", false}, {ModeHost, "/run/guard/proxy.sock", false}} {
		cp := New(Options{Mode: tc.mode, DataDir: "/data"}, klog.Background())
		cp.SetEgressProxy(tc.socket)
		has := slices.ContainsFunc(cp.apiserverArgs("https://127.0.0.1:2379", 6443), func(a string) bool {
			return strings.HasPrefix(a, "--egress-selector-config-file=")
		})
		if has != tc.want {
			t.Errorf("%s mode, socket %q: egress selector flag %v, want %v", tc.mode, tc.socket, has, tc.want)
		}
	}
}
