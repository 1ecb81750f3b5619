package server

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sublet-dev/sublet/config/policy"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// snapshotKeyNamespace is where the platform's snapshot key is kept, in
// the management cluster and in each connected cluster (where the agent
// reads it): the platform's namespace.
const snapshotKeyNamespace = policy.DefaultNamespace

// shareSnapshotKey gives connected cluster cc the platform's snapshot key
// (the management cluster's, made on first use), so that every agent can
// read every other's snapshots: a move restores in one cluster what
// another wrote. A key the cluster had is kept to read its older
// snapshots. A cluster without the platform's namespace (no agent yet) is
// left for the next round.
func (s *Server) shareSnapshotKey(ctx context.Context, cc *clusterConfig) {
	keys, err := snapshot.LoadKeyring(ctx, s.kube, snapshotKeyNamespace)
	if err != nil {
		s.log.Error(err, "the platform's snapshot key")
		return
	}
	err = snapshot.ShareKey(ctx, cc.kube, snapshotKeyNamespace, keys.Current)
	if err != nil && !apierrors.IsNotFound(err) {
		s.log.Error(err, "share the snapshot key with a connected cluster", "cluster", cc.name)
	}
}
