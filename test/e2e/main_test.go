// Package e2e drives sublet end to end: the built binary as a child process,
// real API servers, kubectl where a user would use it.
package e2e

import (
	"os"
	"testing"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// host is the local host cluster every test in this package shares.
var host *testenv.Process

func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithHost(m, 2, &host))
}

func needHost(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a host cluster; skipped with -short")
	}
}
