// Package charts embeds Sublet's Helm charts: vcluster, which the agent's
// pod runtime installs per VirtualCluster, and sublet, the platform (agent
// and server) for clusters of one's own.
package charts

import (
	"embed"
	"io/fs"
	"path"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

//go:embed all:vcluster all:sublet
var files embed.FS

// VCluster loads the vcluster chart.
func VCluster() (*chart.Chart, error) { return load("vcluster") }

// Sublet loads the platform chart.
func Sublet() (*chart.Chart, error) { return load("sublet") }

func load(dir string) (*chart.Chart, error) {
	var buffered []*loader.BufferedFile
	err := fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		buffered = append(buffered, &loader.BufferedFile{Name: path.Clean(p[len(dir)+1:]), Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(buffered)
}
