package translate

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxVClusterNameLength keeps a virtual cluster's name short enough that the
// host names of typical objects stay readable: the name ends every one of
// them (NAME-x-NAMESPACE-x-VCLUSTER, at most 63 characters).
const MaxVClusterNameLength = 40

// ValidateVClusterName returns what is wrong with name as the name of a
// virtual cluster (nil if nothing): it must be a DNS-1123 label (lower-case
// letters, digits and '-', no dots) of at most MaxVClusterNameLength
// characters. Each message names the rule and the limit.
func ValidateVClusterName(name string) []string {
	if name == "" {
		return []string{"must not be empty"}
	}
	var msgs []string
	if len(name) > MaxVClusterNameLength {
		msgs = append(msgs, fmt.Sprintf("is %d characters long; a virtual cluster's name may have at most %d (it ends the host name of every synced object)", len(name), MaxVClusterNameLength))
	}
	for _, m := range validation.IsDNS1123Label(name) {
		if len(name) > validation.DNS1123LabelMaxLength && len(msgs) > 0 {
			continue // the length is already said, with the tighter limit
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// ValidateHostNamespace returns what is wrong with ns as a host namespace
// name (nil if nothing).
func ValidateHostNamespace(ns string) []string {
	if ns == "" {
		return []string{"must not be empty"}
	}
	return validation.IsDNS1123Label(ns)
}
