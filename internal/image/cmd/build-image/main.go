// Command build-image writes the Sublet image as an OCI image archive; it
// is what `make image` runs.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sublet-dev/sublet/internal/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
}

func run() error {
	var o image.Options
	var tag, output, created string
	flag.StringVar(&o.Binary, "binary", "bin/sublet", "Static sublet binary to put in the image.")
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates for the image.")
	flag.StringVar(&o.Version, "version", "", "Image version (label and default tag).")
	flag.StringVar(&o.Source, "source", "https://github.com/sublet-dev/sublet", "Source repository URL (label).")
	flag.StringVar(&o.Revision, "revision", "", "Commit the binary was built from (label).")
	flag.StringVar(&o.Arch, "arch", "", "GOARCH of the binary; default this machine's.")
	flag.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "Creation time in Unix seconds (the commit's time keeps builds reproducible); default $SOURCE_DATE_EPOCH, else 0.")
	flag.StringVar(&tag, "tag", "", "Image reference REPO:TAG recorded in the archive; default ghcr.io/sublet-dev/sublet:VERSION.")
	flag.StringVar(&output, "output", "bin/sublet-image.tar", "Archive to write.")
	flag.Parse()
	o.Created = time.Unix(0, 0)
	if created != "" {
		sec, err := strconv.ParseInt(created, 10, 64)
		if err != nil {
			return fmt.Errorf("--created %q: not Unix seconds: %w", created, err)
		}
		o.Created = time.Unix(sec, 0)
	}
	if tag == "" {
		tag = "ghcr.io/sublet-dev/sublet:" + o.Version
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("--tag %q: %w", tag, err)
	}
	img, err := image.Build(o)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(output), ".sublet-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := image.WriteArchive(tmp, img, ref, o.Created); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes it private; the archive is for anyone to load.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), output); err != nil {
		return err
	}
	fmt.Printf("%s: %s@%s\n", output, ref.Name(), digest)
	return nil
}
