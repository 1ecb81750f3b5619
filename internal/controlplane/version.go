package controlplane

import (
	"fmt"
	"strconv"
	"strings"

	baseversion "k8s.io/component-base/version"
)

// emulationWindow is how many minor versions below its own the apiserver can
// emulate (upstream's compatibility-version range).
const emulationWindow = 3

// BinaryVersion returns the Kubernetes version this binary was built from, as
// stamped at link time (for example "v1.37.2"), or the built-in major.minor
// when the binary was not stamped.
func BinaryVersion() string {
	if v := baseversion.Get().GitVersion; v != "" && !strings.HasPrefix(v, "v0.0.0") {
		return v
	}
	return "v" + baseversion.DefaultKubeBinaryVersion + ".0"
}

func minorOf(v string) (int, error) {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("version %q is not a Kubernetes 1.x version", v)
	}
	return strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
}

// checkEmulatable reports whether version v (1.MINOR[.PATCH]) can run on this
// binary: the same minor or up to emulationWindow minors older.
func checkEmulatable(v string) error {
	want, err := minorOf(v)
	if err != nil {
		return err
	}
	have, err := minorOf(BinaryVersion())
	if err != nil {
		return err
	}
	if want > have || want < have-emulationWindow {
		return fmt.Errorf("--kubernetes-version %s is not supported: this build runs 1.%d to 1.%d", v, have-emulationWindow, have)
	}
	return nil
}

// emulatedVersion returns "1.MINOR" when v asks for an older minor than the
// binary's, or "" when no emulation is needed.
func emulatedVersion(v string) string {
	if v == "" {
		return ""
	}
	want, err := minorOf(v)
	if err != nil {
		return ""
	}
	have, err := minorOf(BinaryVersion())
	if err != nil || want == have {
		return ""
	}
	return fmt.Sprintf("1.%d", want)
}
