package pathflag

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

func TestVarMakesPathsAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arg, want string }{
		{".sublet", filepath.Join(wd, ".sublet")},
		{"./a/../b/c.yaml", filepath.Join(wd, "b", "c.yaml")},
		{"/etc/hosts", "/etc/hosts"},
		{"-", "-"},
		{"", ""},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var p string
		Var(fs, &p, "state-dir", "rel-default", "")
		if err := fs.Parse([]string{"--state-dir=" + tc.arg}); err != nil {
			t.Fatal(err)
		}
		if p != tc.want {
			t.Errorf("--state-dir=%q: got %q, want %q", tc.arg, p, tc.want)
		}
		if got := fs.Lookup("state-dir").Value.Type(); got != Type {
			t.Errorf("type %q", got)
		}
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var p string
	VarP(fs, &p, "values", "f", "rel-default", "")
	if p != filepath.Join(wd, "rel-default") {
		t.Errorf("default not made absolute: %q", p)
	}
}
