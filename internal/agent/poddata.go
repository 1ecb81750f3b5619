package agent

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v3/pkg/action"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/restconfig"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

var _ dataRuntime = (*podRuntime)(nil)

const (
	// restartTimeout bounds the wait for a pod to come back on a new data
	// dir, or for a sleeping cluster's data-only pod to start.
	restartTimeout = 3 * time.Minute
	// reachTimeout bounds the retries of a data endpoint that does not
	// answer yet: a pod publishes its token as it starts, a little before
	// its Service routes to it.
	reachTimeout = 90 * time.Second
)

// dataEndpoint is how the agent reaches vc's pod's data endpoint: the
// kubeconfig and token the pod published in secret vc-NAME.
type dataEndpoint struct {
	cfg   *rest.Config
	token string
}

func (r *podRuntime) dataEndpoint(ctx context.Context, vc *storagev1.VirtualCluster) (dataEndpoint, error) {
	s, err := r.host.CoreV1().Secrets(vc.Namespace).Get(ctx, kubeconfigSecret(vc), metav1.GetOptions{})
	if err != nil {
		return dataEndpoint{}, fmt.Errorf("the secret its pod publishes: %w", err)
	}
	token := string(s.Data[storagev1.DataTokenKey])
	if token == "" {
		return dataEndpoint{}, fmt.Errorf("secret %s has no %s: its pod runs an image without the data endpoint; upgrade the image", s.Name, storagev1.DataTokenKey)
	}
	cfg, err := restconfig.FromInlineKubeconfig(s.Data["config"])
	if err != nil {
		return dataEndpoint{}, fmt.Errorf("read the virtual cluster's admin kubeconfig: %w", err)
	}
	return dataEndpoint{cfg: cfg, token: token}, nil
}

// do sends a request to the data endpoint, with the body body opens (nil:
// none), again while the endpoint cannot be reached, up to reachTimeout; a
// status other than want is an error with the endpoint's message.
func (e dataEndpoint) do(ctx context.Context, method string, body func() (io.ReadCloser, error), want int) (*http.Response, error) {
	client, err := rest.HTTPClientFor(e.cfg)
	if err != nil {
		return nil, err
	}
	var resp *http.Response
	var last error
	// Each request on ctx: a body streams past the polling's deadline.
	err = wait.PollUntilContextTimeout(ctx, time.Second, reachTimeout, true, func(context.Context) (bool, error) {
		resp, last = e.send(ctx, client, method, body)
		return last == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reach its pod: %w", cmp.Or(last, err))
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("its pod answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

func (e dataEndpoint) send(ctx context.Context, client *http.Client, method string, body func() (io.ReadCloser, error)) (*http.Response, error) {
	var rc io.ReadCloser = http.NoBody
	if body != nil {
		var err error
		if rc, err = body(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(e.cfg.Host, "/")+storagev1.DataPath, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	if f, ok := rc.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			req.ContentLength = fi.Size()
		}
	}
	req.Header.Set(storagev1.DataTokenHeader, e.token)
	return client.Do(req)
}

// published reports whether vc's pod published its kubeconfig Secret:
// it ran.
func (r *podRuntime) published(ctx context.Context, vc *storagev1.VirtualCluster) (bool, error) {
	_, err := r.host.CoreV1().Secrets(vc.Namespace).Get(ctx, kubeconfigSecret(vc), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// HasData: an error reading the Secret does not say the pod never ran.
func (r *podRuntime) HasData(ctx context.Context, vc *storagev1.VirtualCluster) bool {
	ok, err := r.published(ctx, vc)
	return ok || err != nil
}

// CopyOut reads the copy the pod makes of its data dir, within lim.
func (r *podRuntime) CopyOut(ctx context.Context, vc *storagev1.VirtualCluster, stage string, lim snapshot.Limits) (string, error) {
	unlock := r.lockData(vc)
	defer unlock()
	e, done, _, err := r.endpointOf(ctx, vc)
	if err != nil {
		return "", err
	}
	defer done()
	resp, err := e.do(ctx, http.MethodGet, nil, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("copy the data of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	defer resp.Body.Close()
	if err := snapshot.ReadTree(resp.Body, stage, lim); err != nil {
		return "", fmt.Errorf("copy the data of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	return controlplane.DatastoreOf(stage)
}

// StageDir is under the agent's state dir; a cluster whose pod has not
// run yet has no pod to send it to.
func (r *podRuntime) StageDir(ctx context.Context, vc *storagev1.VirtualCluster) (string, error) {
	ok, err := r.published(ctx, vc)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errNotRunning
	}
	stage := filepath.Join(r.stateDir, "staged", vc.Namespace, vc.Name)
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	return stage, os.MkdirAll(stage, 0o700)
}

// ReplaceData sends staged to vc's pod, which restarts on it, and waits
// until the pod published its new start (a new data endpoint token). A
// sleeping cluster's data-only pod keeps it for the cluster's next start.
func (r *podRuntime) ReplaceData(ctx context.Context, vc *storagev1.VirtualCluster, staged string) error {
	unlock := r.lockData(vc)
	defer unlock()
	if err := controlplane.TrimForReplacement(staged); err != nil {
		return err
	}
	// A file, so a request the Service did not route yet is sent again.
	archive := staged + ".tar"
	if err := writeTreeFile(archive, staged); err != nil {
		return err
	}
	defer os.Remove(archive)
	e, done, asleep, err := r.endpointOf(ctx, vc)
	if err != nil {
		return err
	}
	defer done()
	resp, err := e.do(ctx, http.MethodPut, func() (io.ReadCloser, error) { return os.Open(archive) }, http.StatusNoContent)
	if err != nil {
		return fmt.Errorf("send the new data to the pod of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	resp.Body.Close()
	if asleep {
		r.log.Info("sent a new data dir to the sleeping cluster's volume; it starts on it when it wakes", "virtualcluster", klog.KObj(vc))
		return nil
	}
	r.log.Info("sent a new data dir to the pod; waiting for it to restart on it", "virtualcluster", klog.KObj(vc))
	if _, err := r.nextEndpoint(ctx, vc, e.token); err != nil {
		// The pod took the data: it runs on it once it starts again,
		// which the readiness of the next Ensure reports.
		r.log.Error(err, "the pod took the new data dir but has not restarted on it yet", "virtualcluster", klog.KObj(vc))
	}
	return nil
}

// writeTreeFile writes dir as WriteTree's tar to the new file path.
func writeTreeFile(path, dir string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = snapshot.WriteTree(f, dir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// nextEndpoint waits, at most restartTimeout, until vc's pod publishes a
// data endpoint token other than old: a new start.
func (r *podRuntime) nextEndpoint(ctx context.Context, vc *storagev1.VirtualCluster, old string) (dataEndpoint, error) {
	var next dataEndpoint
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, restartTimeout, true, func(ctx context.Context) (bool, error) {
		e, err := r.dataEndpoint(ctx, vc)
		next = e
		return err == nil && e.token != old, nil
	})
	if err != nil {
		return dataEndpoint{}, fmt.Errorf("no new start of its pod within %s: see its logs", restartTimeout)
	}
	return next, nil
}

// endpointOf is vc's data endpoint. A release at 0 replicas (a sleeping
// cluster) has no pod: it runs one that serves the data endpoint alone
// (--data-only) until done is called, which puts it back to 0; asleep
// says so.
func (r *podRuntime) endpointOf(ctx context.Context, vc *storagev1.VirtualCluster) (e dataEndpoint, done func(), asleep bool, err error) {
	done = func() {}
	cfg, err := r.helm(vc.Namespace)
	if err != nil {
		return e, done, false, err
	}
	rel, err := action.NewGet(cfg).Run(vc.Name)
	if err != nil {
		return e, done, false, fmt.Errorf("the release of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	// A data-only release left by an agent that stopped serves again.
	asleep = fmt.Sprint(rel.Config["replicas"]) == "0" || dataOnly(rel.Config)
	if !asleep {
		e, err = r.dataEndpoint(ctx, vc)
		return e, done, false, err
	}
	old, _ := r.dataEndpoint(ctx, vc)
	if err := r.setDataOnly(ctx, vc, true); err != nil {
		return e, done, true, err
	}
	done = func() {
		// Also when ctx ended: the pod must not stay up.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.setDataOnly(ctx, vc, false); err != nil {
			r.log.Error(err, "put the sleeping cluster's data-only pod back to sleep", "virtualcluster", klog.KObj(vc))
		}
	}
	if dataOnly(rel.Config) {
		// Its pod may already serve; the token it published says which.
		if e, err = r.dataEndpoint(ctx, vc); err == nil {
			return e, done, true, nil
		}
	}
	if e, err = r.nextEndpoint(ctx, vc, old.token); err != nil {
		done()
		return e, func() {}, true, fmt.Errorf("start a pod that serves the sleeping cluster's data: %w", err)
	}
	return e, done, true, nil
}

// setDataOnly runs vc's release as one pod serving its data alone (on),
// or puts a release doing so back to 0 replicas (off; a release that no
// longer does, woken meanwhile, is left alone).
func (r *podRuntime) setDataOnly(ctx context.Context, vc *storagev1.VirtualCluster, on bool) error {
	cfg, err := r.helm(vc.Namespace)
	if err != nil {
		return err
	}
	rel, err := action.NewGet(cfg).Run(vc.Name)
	if err != nil {
		return err
	}
	if dataOnly(rel.Config) == on {
		return nil
	}
	vals := maps.Clone(rel.Config)
	args, _ := vals["args"].([]interface{})
	if on {
		vals["replicas"], vals["args"] = 1, append(slices.Clone(args), dataOnlyFlag)
	} else {
		vals["replicas"], vals["args"] = 0, slices.DeleteFunc(slices.Clone(args), func(a interface{}) bool { return a == dataOnlyFlag })
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.Timeout, upgrade.MaxHistory = vc.Namespace, time.Minute, 5
	if _, err := upgrade.RunWithContext(ctx, vc.Name, r.chart, vals); err != nil {
		return fmt.Errorf("upgrade the vcluster release (data only: %v): %w", on, err)
	}
	return nil
}

// dataOnlyFlag makes a release's pod serve its data alone.
const dataOnlyFlag = "--data-only"

// dataOnly reports whether release values vals run the data-only pod.
func dataOnly(vals map[string]interface{}) bool {
	args, _ := vals["args"].([]interface{})
	return slices.Contains(args, interface{}(dataOnlyFlag))
}

// dataLocks serialize the agent's reads and replacements of one cluster's
// data (the snapshot controller's and the restore's) and say which run.
type dataLocks struct {
	mu     sync.Mutex
	locks  map[string]*sync.Mutex
	active map[string]int
}

// lockData waits for vc's data to be free and holds it until the func
// returned is called.
func (r *podRuntime) lockData(vc *storagev1.VirtualCluster) func() {
	key := vc.Namespace + "/" + vc.Name
	d := &r.data
	d.mu.Lock()
	if d.locks == nil {
		d.locks, d.active = map[string]*sync.Mutex{}, map[string]int{}
	}
	l := d.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		d.locks[key] = l
	}
	d.active[key]++
	d.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		d.mu.Lock()
		d.active[key]--
		d.mu.Unlock()
	}
}

// dataBusy reports whether the agent reads or replaces vc's data now.
func (r *podRuntime) dataBusy(vc *storagev1.VirtualCluster) bool {
	r.data.mu.Lock()
	defer r.data.mu.Unlock()
	return r.data.active[vc.Namespace+"/"+vc.Name] > 0
}
