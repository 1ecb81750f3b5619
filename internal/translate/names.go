// Package translate maps virtual-cluster objects to their host copies: names,
// ownership labels and annotations, labels and selectors. Every function is
// pure; a Translator value carries the virtual cluster's identity.
package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

const (
	// separator joins name, namespace and virtual cluster in host names.
	separator = "-x-"
	// maxNameLength is a DNS-1123 label's limit, which host names of every
	// kind respect so that services and pod hostnames stay valid.
	maxNameLength = 63
	// hashLength is the number of hex digits of the hash in shortened names.
	hashLength = 10
)

// Translator maps objects of one virtual cluster into one host namespace.
type Translator struct {
	// VCluster is the virtual cluster's name; it ends every host name.
	VCluster string
	// HostNamespace is where the host copies live.
	HostNamespace string
}

// HostName returns the host name of the virtual object vNamespace/vName:
// NAME-x-NAMESPACE-x-VCLUSTER, or, when that is longer than 63 characters,
// not a DNS-1123 label, or could be read two ways, a prefix of it and a hash
// of all three parts. The result is a valid DNS-1123 label that starts like
// vName.
func (t Translator) HostName(vNamespace, vName string) string {
	full := vName + separator + vNamespace + separator + t.VCluster
	if len(full) <= maxNameLength && isLabel(full) && unambiguous(vName, vNamespace, t.VCluster) {
		return full
	}
	sum := sha256.Sum256([]byte(vName + "/" + vNamespace + "/" + t.VCluster))
	hash := hex.EncodeToString(sum[:])[:hashLength]
	prefix := sanitize(full)
	if max := maxNameLength - hashLength - 1; len(prefix) > max {
		prefix = prefix[:max]
	}
	prefix = strings.TrimRight(prefix, "-")
	if prefix == "" {
		return "x" + hash
	}
	return prefix + "-" + hash
}

// HostClusterScopedName returns the host name of a cluster-scoped virtual
// object (it has no namespace): NAME-x-VCLUSTER, shortened like HostName.
func (t Translator) HostClusterScopedName(vName string) string {
	return Translator{VCluster: t.VCluster}.HostName("", vName)
}

// unambiguous reports whether NAME-x-NAMESPACE-x-VCLUSTER splits back into
// its parts in one way only: no separator inside a part, and none formed
// where a part meets one ("a-x" + "-x-" or "-x-" + "x-a").
func unambiguous(name, namespace, vcluster string) bool {
	return !strings.Contains(name, separator) && !strings.HasSuffix(name, "-x") &&
		!strings.Contains(namespace, separator) && !strings.HasPrefix(namespace, "x-") && !strings.HasSuffix(namespace, "-x") &&
		!strings.Contains(vcluster, separator) && !strings.HasPrefix(vcluster, "x-")
}

// sanitize lowercases s and replaces what a DNS-1123 label may not hold
// ('.' and anything outside [a-z0-9-]) with '-'.
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// isLabel reports whether s is a DNS-1123 label.
func isLabel(s string) bool {
	if s == "" || len(s) > maxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}
