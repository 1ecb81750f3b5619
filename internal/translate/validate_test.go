package translate

import (
	"strings"
	"testing"
)

func TestValidateVClusterName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string // substrings of the messages; nil means valid
	}{
		{"demo", nil},
		{strings.Repeat("a", 40), nil},
		{strings.Repeat("a", 41), []string{"41 characters", "at most 40"}},
		{strings.Repeat("a", 63), []string{"63 characters", "at most 40"}},
		{strings.Repeat("a", 64), []string{"64 characters", "at most 40"}},
		{"my.cluster", []string{"dots"}},
		{"Demo", []string{"RFC 1123 label"}},
		{"-demo", []string{"RFC 1123 label"}},
		{"", []string{"must not be empty"}},
	} {
		msgs := ValidateVClusterName(tc.name)
		if tc.want == nil {
			if msgs != nil {
				t.Errorf("%q: unexpected %v", tc.name, msgs)
			}
			continue
		}
		all := strings.Join(msgs, "; ")
		for _, w := range tc.want {
			if !strings.Contains(all, w) {
				t.Errorf("%q: %q does not say %q", tc.name, all, w)
			}
		}
	}
	if msgs := ValidateHostNamespace("team.a"); len(msgs) == 0 {
		t.Error("namespace with a dot accepted")
	}
	if msgs := ValidateHostNamespace("vcluster-demo"); msgs != nil {
		t.Errorf("valid namespace refused: %v", msgs)
	}
}
