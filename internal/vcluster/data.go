package vcluster

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

// ErrDataReplaced ends Run when the agent replaced the data dir through
// the data endpoint: the caller starts the runtime again, on the new data
// (controlplane.FinishReplacement puts it in place first).
var ErrDataReplaced = errors.New("the data dir was replaced (a restore or fork); start again to run on it")

// dataEndpoint serves storagev1.DataPath in the virtual API server's
// handler chain, so it needs the API server's authentication and
// authorization (the agent's admin credentials) and, as a tenant is
// cluster-admin too, the token that only this process and the host
// Secret it publishes it in know.
type dataEndpoint struct {
	token   string
	dataDir string
	limits  snapshot.Limits
	// replaced is called once a replacement is committed.
	replaced func()
	busy     sync.Mutex
	log      klog.Logger
}

func newDataEndpoint(dataDir string, replaced func(), log klog.Logger) (*dataEndpoint, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return &dataEndpoint{token: hex.EncodeToString(b), dataDir: dataDir, limits: snapshot.DefaultLimits, replaced: replaced, log: log}, nil
}

// Wrap is an API server handler wrapper (controlplane.WrapAPIHandler).
func (d *dataEndpoint) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != storagev1.DataPath {
			next.ServeHTTP(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(storagev1.DataTokenHeader)), []byte(d.token)) != 1 {
			kubeproxy.WriteStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
				"the data endpoint serves the Sublet agent alone: take snapshots and restore them with sublet snapshot and sublet restore")
			return
		}
		if !d.busy.TryLock() {
			kubeproxy.WriteStatus(w, http.StatusConflict, metav1.StatusReasonConflict, "another copy or replacement of this virtual cluster's data is running; try again when it is done")
			return
		}
		defer d.busy.Unlock()
		switch r.Method {
		case http.MethodGet:
			d.serveCopy(w, r)
		case http.MethodPut:
			d.replace(w, r)
		default:
			kubeproxy.WriteStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "the data endpoint takes GET and PUT")
		}
	})
}

// serveCopy streams a tar of what a snapshot keeps of the data dir.
func (d *dataEndpoint) serveCopy(w http.ResponseWriter, r *http.Request) {
	tmp, err := os.MkdirTemp("", "sublet-data-")
	if err != nil {
		kubeproxy.WriteStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	defer os.RemoveAll(tmp)
	stage := filepath.Join(tmp, "data")
	if _, err := controlplane.CopyForSnapshot(r.Context(), d.dataDir, stage); err != nil {
		kubeproxy.WriteStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "copy the data dir: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := snapshot.WriteTree(w, stage); err != nil {
		d.log.Error(err, "data endpoint: the copy of the data dir was cut short")
		// The client must not take a cut stream for a whole one.
		panic(http.ErrAbortHandler)
	}
	d.log.Info("data endpoint: the data dir was copied out", "remote", r.RemoteAddr)
}

// replace takes a prepared data dir and commits it as the data dir's
// replacement, then restarts the runtime on it.
func (d *dataEndpoint) replace(w http.ResponseWriter, r *http.Request) {
	stage, err := controlplane.ReplacementStage(d.dataDir)
	if err == nil {
		err = snapshot.ReadTree(r.Body, stage, d.limits)
	}
	if err == nil {
		err = controlplane.CommitReplacement(d.dataDir)
	}
	if err != nil {
		_ = os.RemoveAll(stage)
		kubeproxy.WriteStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("the new data dir was not taken: %v", err))
		return
	}
	d.log.Info("data endpoint: a new data dir is in place for the next start; restarting", "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	d.replaced()
}
