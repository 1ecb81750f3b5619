// Package readiness says when a Sublet control plane is ready to serve. It
// is a leaf package, so the agent can probe control planes without linking
// them.
package readiness

import (
	"net/url"
	"os"
	"path/filepath"

	"github.com/sublet-dev/sublet/internal/pki"
)

// bootstrapHooks are the API server's readiness checks that only write the
// cluster's default objects: the RBAC roles of the system components and
// the system priority classes. On a restart those objects are in the
// datastore already, so authorization and scheduling work from the first
// request on, while the hooks still compare every default object with the
// stored one (about 150 reads, the last ~0.3-0.5 s of a start).
var bootstrapHooks = []string{
	"poststarthook/rbac/bootstrap-roles",
	"poststarthook/scheduling/bootstrap-system-priority-classes",
}

// BootstrappedFile, in a data dir, records that its API server once passed
// every readiness check, bootstrap hooks included.
const BootstrappedFile = "bootstrapped"

// Bootstrapped reports whether the control plane of data dir dir once
// passed every readiness check, so its default objects are stored.
func Bootstrapped(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, BootstrappedFile))
	return err == nil
}

// MarkBootstrapped records that the control plane of dataDir passed every
// readiness check.
func MarkBootstrapped(dataDir string) error {
	return pki.WriteFileAtomic(filepath.Join(dataDir, BootstrappedFile), []byte("every readiness check passed once\n"), 0o600)
}

// Path is the readiness check of a control plane: all of /readyz, less the
// bootstrap hooks once the datastore holds their objects (a restart, or a
// wake from sleep mode).
func Path(bootstrapped bool) string {
	if !bootstrapped {
		return "/readyz"
	}
	return "/readyz?" + url.Values{"exclude": bootstrapHooks}.Encode()
}
