// Package snapshot is the format of a virtual-cluster snapshot: a tar archive
// of a clear-text manifest and a payload (a copy of the manifest, then the
// datastore backup and the PKI directory) gzip-compressed and encrypted with
// age to the platform's key, and the locations (a file on the host, an OCI
// registry) it is stored in.
package snapshot

import (
	"errors"
	"time"
)

// FormatVersion is the archive format Write produces and Extract accepts.
const FormatVersion = 1

// Names of the two archive entries, in this order.
const (
	manifestEntry = "manifest.json"
	payloadEntry  = "payload.age"
)

// sealedManifestEntry is the payload's first entry: the manifest again, in
// the same bytes as manifestEntry. The clear copy can be swapped by anyone
// who can copy archives; this one is encrypted with the data it describes,
// and Extract refuses an archive whose two copies differ. The name is
// reserved: Write refuses a directory holding it, and Extract writes it
// nowhere.
const sealedManifestEntry = ".sublet-manifest.json"

// maxManifestSize bounds the manifest entry, so a file that is not a
// snapshot cannot make ReadManifest allocate without limit.
const maxManifestSize = 16 << 20

// Manifest describes a snapshot; kept in clear so a snapshot can be listed
// and checked without the key, and sealed in the payload so that Extract
// returns one that was not altered.
type Manifest struct {
	// Format is FormatVersion; Extract refuses another.
	Format int `json:"format"`
	// Name is the VirtualClusterSnapshot's name.
	Name string `json:"name"`
	// Source is the VirtualCluster the snapshot was taken of.
	Source Source `json:"source"`
	// Created is when the snapshot was taken.
	Created time.Time `json:"created"`
	// KubernetesVersion is the source's Kubernetes version, e.g. "v1.32.4".
	KubernetesVersion string `json:"kubernetesVersion"`
	// Datastore is "sqlite" or "etcd".
	Datastore string `json:"datastore"`
	// Values is the source's effective values YAML.
	Values string `json:"values,omitempty"`
	// Template is the source's spec.templateRef.name.
	Template string `json:"template,omitempty"`
	// OwnValues is the source's spec.helmRelease.values.
	OwnValues string `json:"ownValues,omitempty"`
	// Recipient is the age recipient (public key) the payload is encrypted to.
	Recipient string `json:"recipient"`
	// Sleeping says the source was asleep when the snapshot was taken.
	Sleeping bool `json:"sleeping,omitempty"`
}

// Source names the VirtualCluster a snapshot was taken of.
type Source struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

var (
	// ErrCorrupt is matched (errors.Is) by the errors for data that is not a
	// Sublet snapshot, or is one that was cut or damaged.
	ErrCorrupt = errors.New("not a Sublet snapshot or corrupt")
	// ErrKeyMismatch is matched by the error of Extract for a snapshot whose
	// payload is encrypted to another platform's key.
	ErrKeyMismatch = errors.New("snapshot key mismatch")
	// ErrNotFound is matched by the error of Open for a location that holds
	// nothing.
	ErrNotFound = errors.New("snapshot not found")
	// ErrTooLarge is matched by the error of Extract for a payload that
	// unpacks to more bytes or files than its Limits allow.
	ErrTooLarge = errors.New("snapshot too large")
)

// Limits bound what Extract writes: a payload is compressed, and anyone who
// knows the platform's recipient (it is in every manifest) can encrypt one,
// so its size says nothing of what it unpacks to.
type Limits struct {
	// Bytes is the most its files may hold in all.
	Bytes int64
	// Entries is the most files and directories it may hold.
	Entries int
}

// DefaultLimits: 8 GiB, etcd's largest recommended database, and far more
// entries than a data dir has (its datastore, marker and PKI).
var DefaultLimits = Limits{Bytes: 8 << 30, Entries: 1000}

func tooLarge(msg string) error {
	return &snapshotError{sentinel: ErrTooLarge, msg: msg}
}

// snapshotError carries a full one-line message and the sentinel it matches.
type snapshotError struct {
	sentinel error
	msg      string
	err      error
}

func (e *snapshotError) Error() string        { return e.msg }
func (e *snapshotError) Is(target error) bool { return target == e.sentinel }
func (e *snapshotError) Unwrap() error        { return e.err }

// corrupt says that subject (e.g. "the archive") is not a snapshot, with the
// detail err.
func corrupt(subject string, err error) error {
	return &snapshotError{
		sentinel: ErrCorrupt,
		msg:      subject + " is not a Sublet snapshot or is corrupt: " + err.Error() + "; check the location, or use another copy of the snapshot",
		err:      err,
	}
}
