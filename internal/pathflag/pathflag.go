// Package pathflag defines command-line flags that hold filesystem paths.
// A path is made absolute when the flag is set (and for its default), so a
// relative path a user types means the same thing wherever Sublet later
// writes it: into a kubeconfig, a child's command line or a state file.
package pathflag

import (
	"path/filepath"

	"github.com/spf13/pflag"
)

// Type is what `--help` shows for a path flag's value.
const Type = "path"

// Stdio is the value some path flags accept for standard input or output;
// it is kept as is.
const Stdio = "-"

// Var defines a path flag on fs, bound to p, with default value.
func Var(fs *pflag.FlagSet, p *string, name, value, usage string) {
	v := (*pathValue)(p)
	*p = Abs(value)
	fs.Var(v, name, usage)
}

// VarP is Var with a one-letter shorthand.
func VarP(fs *pflag.FlagSet, p *string, name, shorthand, value, usage string) {
	v := (*pathValue)(p)
	*p = Abs(value)
	fs.VarP(v, name, shorthand, usage)
}

// Abs returns path made absolute against the working directory; "" and
// Stdio are returned unchanged, and so is a path Abs cannot resolve.
func Abs(path string) string {
	if path == "" || path == Stdio {
		return path
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	return abs
}

type pathValue string

func (v *pathValue) String() string { return string(*v) }

func (v *pathValue) Set(s string) error {
	*v = pathValue(Abs(s))
	return nil
}

func (v *pathValue) Type() string { return Type }
