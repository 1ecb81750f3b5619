package controlplane

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/sublet-dev/sublet/internal/controlplane/readiness"
)

// A data dir that cannot be renamed as a whole (the pod runtime's: the
// mount point of its volume) takes a replacement inside itself: it is
// written to replaceTmp, committed by one rename to replaceDir, and put in
// place by FinishReplacement at the next start, before anything opens the
// data dir. FinishReplacement first removes what the data dir held, then
// marks that with replaceMoving and moves the new entries in: at every
// point a crash leaves either the old data with an uncommitted or a
// committed replacement, or a replacement half moved in that the next call
// finishes.
const (
	replaceTmp    = ".replace.tmp"
	replaceDir    = ".replace"
	replaceMoving = ".replace-moving"
)

// keptOnReplace are entries of a data dir a replacement leaves alone: its
// own, the components' logs and a volume's lost+found, which the
// runtime's user cannot remove.
var keptOnReplace = []string{replaceDir, replaceTmp, replaceMoving, "logs", "lost+found"}

// replaceable are the top-level entries a replacement may hold: what a
// snapshot keeps of a data dir, as a restore or fork prepares it (etcd's
// backup restored into its member directory).
var replaceable = []string{MarkerFile, readiness.BootstrappedFile, "db", "pki", "etcd"}

// TrimForReplacement removes from the prepared data dir dir what a
// replacement does not carry: what a start of the control plane writes
// again (logs, components' configuration, etcd's client URL).
func TrimForReplacement(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !slices.Contains(replaceable, e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// PKIFileName matches the file names of a data dir's pki/ directory.
var PKIFileName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*\.(crt|key|pub)$`)

// checkPKI fails unless dir's pki/, if any, holds only certificates and
// keys.
func checkPKI(dir string) error {
	entries, err := os.ReadDir(filepath.Join(dir, "pki"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !PKIFileName.MatchString(e.Name()) {
			return fmt.Errorf("the new data dir holds pki/%s; a restored data dir's pki/ holds only certificates and keys", e.Name())
		}
	}
	return nil
}

// ReplacementStage is an empty directory inside data dir data to write a
// replacement into; one left over from before is removed first.
func ReplacementStage(data string) (string, error) {
	stage := filepath.Join(data, replaceTmp)
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	return stage, nil
}

// CommitReplacement checks the replacement written to data's stage and
// makes it the one the next FinishReplacement puts in place.
func CommitReplacement(data string) error {
	stage := filepath.Join(data, replaceTmp)
	entries, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !slices.Contains(replaceable, e.Name()) {
			return fmt.Errorf("the new data dir holds %s; a restored data dir holds only %v", e.Name(), replaceable)
		}
	}
	if _, err := DatastoreOf(stage); err != nil {
		return fmt.Errorf("the new data dir: %w", err)
	}
	if err := checkPKI(stage); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(data, replaceDir)); err != nil {
		return err
	}
	if err := os.Rename(stage, filepath.Join(data, replaceDir)); err != nil {
		return err
	}
	return syncDir(data)
}

// FinishReplacement puts data's committed replacement, if any, in place of
// what it holds, and removes an uncommitted one; it reports whether it
// replaced the data. Call it before anything opens the data dir.
func FinishReplacement(data string) (bool, error) {
	if err := os.RemoveAll(filepath.Join(data, replaceTmp)); err != nil {
		return false, err
	}
	moving := filepath.Join(data, replaceMoving)
	if _, err := os.Stat(moving); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(data, replaceDir)); errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err := removeReplaced(data); err != nil {
			return false, err
		}
		if err := os.WriteFile(moving, nil, 0o600); err != nil {
			return false, err
		}
		if err := syncDir(data); err != nil {
			return false, err
		}
	}
	src := filepath.Join(data, replaceDir)
	entries, err := os.ReadDir(src)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	for _, e := range entries {
		// A kept entry (logs) that the replacement also has is the
		// replacement's.
		target := filepath.Join(data, e.Name())
		if err := os.RemoveAll(target); err != nil {
			return false, err
		}
		if err := os.Rename(filepath.Join(src, e.Name()), target); err != nil {
			return false, fmt.Errorf("put the new data in place: %w", err)
		}
	}
	if err := syncDir(data); err != nil {
		return false, err
	}
	if err := os.RemoveAll(src); err != nil {
		return false, err
	}
	return true, os.Remove(moving)
}

// removeReplaced removes what data dir data holds before its replacement
// moves in.
func removeReplaced(data string) error {
	entries, err := os.ReadDir(data)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if slices.Contains(keptOnReplace, e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(data, e.Name())); err != nil {
			return fmt.Errorf("remove the old data: %w", err)
		}
	}
	return nil
}
