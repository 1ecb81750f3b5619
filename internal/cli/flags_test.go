package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sublet-dev/sublet/internal/pathflag"
)

// notPaths are flags whose names look like paths but hold something else.
var notPaths = map[string]bool{
	"kubeconfig-secret": true, // a Secret's name
	"kubeconfig-server": true, // a URL
}

// TestPathFlagsAreAbsolute: every flag that names a file or directory is a
// pathflag, so a relative path is made absolute where flags are parsed and
// never reaches a kubeconfig or a child process as typed.
func TestPathFlagsAreAbsolute(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			looksLikePath := strings.HasSuffix(f.Name, "-dir") || strings.HasSuffix(f.Name, "-file") ||
				strings.HasSuffix(f.Name, "kubeconfig") || f.Name == "values" || f.Name == "audit-log"
			if !looksLikePath || notPaths[f.Name] {
				return
			}
			seen++
			if f.Value.Type() != pathflag.Type {
				t.Errorf("%s --%s is a %s flag, not a pathflag: a relative path would stay relative", c.CommandPath(), f.Name, f.Value.Type())
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRootCommand())
	if seen < 10 {
		t.Fatalf("only %d path flags found; the walk is broken", seen)
	}
}
