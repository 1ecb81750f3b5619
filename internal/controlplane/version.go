package controlplane

import (
	"fmt"

	"github.com/sublet-dev/sublet/internal/kubeversion"
)

// BinaryVersion returns the Kubernetes version this binary was built from.
func BinaryVersion() string { return kubeversion.Binary() }

func minorOf(v string) (int, error) { return kubeversion.Minor(v) }

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
	if want > have || want < have-kubeversion.EmulationWindow {
		return fmt.Errorf("--kubernetes-version %s is not supported: this build runs 1.%d to 1.%d", v, have-kubeversion.EmulationWindow, have)
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
