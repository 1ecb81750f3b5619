package vcluster

import (
	"strings"
	"testing"

	"github.com/sublet-dev/sublet/internal/exitcode"
)

func TestCheckServiceCIDR(t *testing.T) {
	for _, tc := range []struct {
		virtual, host string
		ok            bool
	}{
		{"10.96.0.0/16", "10.96.0.0/16", true},
		{"10.96.0.0/12", "10.96.0.0/16", true},
		{"10.96.0.0/16", "10.96.0.0/12", false},
		{"10.200.0.0/16", "10.96.0.0/16", false},
		{"fd00::/108", "10.96.0.0/16", false},
		{"10.96.0.0/16", "not-a-cidr", true},
	} {
		err := checkServiceCIDR(tc.virtual, tc.host)
		if (err == nil) != tc.ok {
			t.Errorf("virtual %s, host %s: err %v, want ok=%v", tc.virtual, tc.host, err, tc.ok)
			continue
		}
		if err != nil {
			if exitcode.Of(err) != exitcode.Config {
				t.Errorf("%v is not a configuration error", err)
			}
			if !strings.Contains(err.Error(), tc.virtual) || !strings.Contains(err.Error(), tc.host) {
				t.Errorf("%q does not name both ranges", err)
			}
		}
	}
}
