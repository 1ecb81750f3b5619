package syncer

import (
	"testing"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// TestEveryKindHasASyncer: the kinds table and the syncers agree, so a row
// without its syncer (or a syncer without its row, which would get no host
// rights and no cleanup) fails here rather than on a host.
func TestEveryKindHasASyncer(t *testing.T) {
	impl := syncers()
	rows := map[string]bool{}
	for _, k := range kinds.All() {
		rows[k.Name] = true
		if impl[k.Name] == nil {
			t.Errorf("kind %s has no syncer", k.Name)
		}
	}
	for name := range impl {
		if !rows[name] {
			t.Errorf("syncer %s has no row in the kinds table", name)
		}
	}
}
