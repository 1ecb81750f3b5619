// Package platformapi holds the wire types of the platform server's JSON
// API under /api/v1, and the pure helpers its clients share: the server
// answers with these types, the CLI and the web UI send and read them.
package platformapi

import storagev1 "github.com/sublet-dev/sublet/api/storage/v1"

// User is who a request is from: /api/v1/whoami.
type User struct {
	Name   string   `json:"user"`
	Groups []string `json:"groups"`
	// Key is the AccessKey object's name.
	Key string `json:"accessKey"`
	// Scope, when the key is scoped to one virtual cluster, is that
	// cluster: the key is good for its API and nothing else.
	Scope *storagev1.VirtualClusterScope `json:"scope,omitempty"`
	// Expiration is when the key expires (RFC 3339), if it does.
	Expiration string `json:"expiration,omitempty"`
}

// AccessKeyRequest is the body of POST /api/v1/accesskeys.
type AccessKeyRequest struct {
	// User and Groups default to the caller's; another user needs the
	// right to create accesskeys in the management cluster.
	User        string   `json:"user,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	TTL         string   `json:"ttl,omitempty"`
	Description string   `json:"description,omitempty"`
	// VirtualCluster scopes the key to that virtual cluster (its UID is
	// filled in by the server): the key is then good for its API alone.
	VirtualCluster *storagev1.VirtualClusterScope `json:"virtualCluster,omitempty"`
}

// AccessKeyInfo describes a key (Key only in the reply to its creation).
type AccessKeyInfo struct {
	Name       string   `json:"name"`
	User       string   `json:"user"`
	Groups     []string `json:"groups,omitempty"`
	Expiration string   `json:"expiration,omitempty"`
	Key        string   `json:"key,omitempty"`
	// VirtualCluster is the one the key is scoped to, if any.
	VirtualCluster *storagev1.VirtualClusterScope `json:"virtualCluster,omitempty"`
	// KeySHA256 is the hex SHA-256 of the key, so a client can tell which
	// listed key is the one it holds.
	KeySHA256 string `json:"keySHA256,omitempty"`
}

// ConnectRequest is the body of POST /api/v1/clusters.
type ConnectRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	Kubeconfig  string `json:"kubeconfig"`
	// AllowExecPlugin lets the kubeconfig use an exec plugin, which then
	// runs on the platform server's machine.
	AllowExecPlugin bool `json:"allowExecPlugin,omitempty"`
}

// ClusterInfo is an entry of /api/v1/clusters.
type ClusterInfo struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	Phase       string `json:"phase,omitempty"`
	Message     string `json:"message,omitempty"`
	Version     string `json:"kubernetesVersion,omitempty"`
}

// VirtualClusterInfo is an entry of /api/v1/virtualclusters.
type VirtualClusterInfo struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Phase     string `json:"phase,omitempty"`
	Version   string `json:"kubernetesVersion,omitempty"`
	Created   string `json:"created,omitempty"`
	// Template is the VirtualClusterTemplate it was made from.
	Template string `json:"template,omitempty"`
	// SleepingSince and LastActivity are RFC 3339 times (sleep mode).
	SleepingSince string `json:"sleepingSince,omitempty"`
	LastActivity  string `json:"lastActivity,omitempty"`
}

// Info is /api/v1/info: what clients need to know about this server.
type Info struct {
	// VirtualClusterServerNameSuffix, when set, says every virtual cluster
	// is also served at the root of the server's address to clients that
	// use its server name in the TLS handshake.
	VirtualClusterServerNameSuffix string `json:"virtualClusterServerNameSuffix,omitempty"`
	// MoveRegistry, when set, is the OCI repository prefix REGISTRY/PATH
	// that moves between connected clusters go through: a move of
	// NAMESPACE/NAME without a location of its own uses
	// oci://MOVEREGISTRY/NAMESPACE/NAME:move-TIME.
	MoveRegistry string `json:"moveRegistry,omitempty"`
}

// ScopedKeyKind is the kind in the details of the 403 Status that refuses a
// key scoped to a virtual cluster outside that cluster's API; the details'
// name is the virtual cluster, CLUSTER/NAMESPACE/NAME.
const ScopedKeyKind = "VirtualCluster"

// MoveRequest asks the platform (POST /api/v1/moves) to give the keys
// scoped to virtual cluster Namespace/Name of Cluster, which a move holds,
// to the cluster of that name the move made in ToCluster: the same secret
// keys, good for the moved cluster alone from then on.
type MoveRequest struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	ToCluster string `json:"toCluster"`
}

// MoveResult is how many keys a MoveRequest gave to the moved cluster.
type MoveResult struct {
	Keys int `json:"keys"`
}
