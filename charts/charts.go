// Package charts embeds Sublet's Helm charts: vcluster, which the agent's
// pod runtime installs per VirtualCluster.
package charts

import (
	"embed"
	"io/fs"
	"path"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

//go:embed all:vcluster
var files embed.FS

// VCluster loads the vcluster chart.
func VCluster() (*chart.Chart, error) {
	var buffered []*loader.BufferedFile
	err := fs.WalkDir(files, "vcluster", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepathRel("vcluster", p)
		buffered = append(buffered, &loader.BufferedFile{Name: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(buffered)
}

func filepathRel(base, p string) (string, error) {
	return path.Clean(p[len(base)+1:]), nil
}
