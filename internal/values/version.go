package values

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sublet-dev/sublet/internal/kubeversion"
)

// Version is the Kubernetes version an image asks for and the one that runs.
type Version struct {
	// Asked is MAJOR.MINOR[.PATCH] from the image tag; "" without an image.
	Asked string
	// Run is the minor to run, "1.MINOR"; "" runs the binary's own.
	Run string
	// Fallback: Asked is not shipped, Run is the nearest shipped minor.
	Fallback bool
}

var tagVersionRE = regexp.MustCompile(`^v?(1)\.([0-9]+)(?:\.([0-9]+))?(?:[-+].*)?$`)

// ParseVersion reads the Kubernetes version from an image's tag
// (rancher/k3s:v1.21.2-k3s1 → 1.21.2) and picks the minor to run: the
// asked one if this build runs it, else the nearest one it runs.
func ParseVersion(image string) (Version, error) {
	if image == "" {
		return Version{}, nil
	}
	name := image
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	slash := strings.LastIndex(name, "/")
	colon := strings.LastIndex(name, ":")
	if colon <= slash {
		return Version{}, fmt.Errorf("image has no tag; its tag chooses the Kubernetes version (example: rancher/k3s:v1.21.2-k3s1)")
	}
	tag := name[colon+1:]
	m := tagVersionRE.FindStringSubmatch(tag)
	if m == nil {
		return Version{}, fmt.Errorf("tag %q does not start with a Kubernetes version (example: v1.21.2-k3s1)", tag)
	}
	asked := m[1] + "." + m[2]
	if m[3] != "" {
		asked += "." + m[3]
	}
	minor, _ := strconv.Atoi(m[2])
	oldest, newest := kubeversion.Range()
	v := Version{Asked: asked}
	switch {
	case minor < oldest:
		v.Run, v.Fallback = fmt.Sprintf("1.%d", oldest), true
	case minor > newest:
		v.Run, v.Fallback = fmt.Sprintf("1.%d", newest), true
	default:
		v.Run = fmt.Sprintf("1.%d", minor)
	}
	return v, nil
}
