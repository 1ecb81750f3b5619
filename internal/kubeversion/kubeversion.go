// Package kubeversion knows which Kubernetes versions this build of Sublet
// runs: the version of k8s.io/kubernetes it is built from, and older minors
// through upstream's compatibility-version emulation.
package kubeversion

import (
	"fmt"
	"strconv"
	"strings"

	baseversion "k8s.io/component-base/version"
)

// EmulationWindow is how many minor versions below its own the apiserver
// can emulate (upstream's compatibility-version range).
const EmulationWindow = 3

// Binary returns the Kubernetes version this binary was built from, as
// stamped at link time (for example "v1.37.2"), or the built-in
// major.minor when the binary was not stamped.
func Binary() string {
	if v := baseversion.Get().GitVersion; v != "" && !strings.HasPrefix(v, "v0.0.0") {
		return v
	}
	return "v" + baseversion.DefaultKubeBinaryVersion + ".0"
}

// Minor returns the minor of a 1.MINOR[.PATCH] version (a "v" prefix and a
// suffix after "-" allowed).
func Minor(v string) (int, error) {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("version %q is not a Kubernetes 1.x version", v)
	}
	return strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
}

// Range returns the oldest and newest minor this build runs.
func Range() (oldest, newest int) {
	newest, err := Minor(Binary())
	if err != nil {
		panic(err) // the build's own version is always 1.x
	}
	return newest - EmulationWindow, newest
}
