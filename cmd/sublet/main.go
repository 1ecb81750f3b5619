// Command sublet runs and manages virtual Kubernetes clusters.
package main

import (
	"os"

	"github.com/sublet-dev/sublet/internal/cli"
)

func main() {
	os.Exit(cli.Execute())
}
