package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/controlplane"
	"github.com/sublet-dev/sublet/internal/restconfig"
	"github.com/sublet-dev/sublet/internal/snapshot"
)

var _ dataRuntime = (*podRuntime)(nil)

// restartTimeout bounds the wait for a pod to come back on a new data dir.
const restartTimeout = 3 * time.Minute

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

// do sends one request to the data endpoint; a status other than want is
// an error with the endpoint's message.
func (e dataEndpoint) do(ctx context.Context, method string, body io.Reader, want int) (*http.Response, error) {
	client, err := rest.HTTPClientFor(e.cfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(e.cfg.Host, "/")+storagev1.DataPath, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(storagev1.DataTokenHeader, e.token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach its pod (a sleeping cluster has none: wake it first): %w", err)
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("its pod answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

func (r *podRuntime) HasData(ctx context.Context, vc *storagev1.VirtualCluster) bool {
	_, err := r.dataEndpoint(ctx, vc)
	return err == nil
}

// CopyOut reads the copy the pod makes of its data dir.
func (r *podRuntime) CopyOut(ctx context.Context, vc *storagev1.VirtualCluster, stage string) (string, error) {
	e, awake, err := r.endpointOf(ctx, vc)
	if err != nil {
		return "", err
	}
	defer awake()
	resp, err := e.do(ctx, http.MethodGet, nil, http.StatusOK)
	if err != nil {
		return "", fmt.Errorf("copy the data of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	defer resp.Body.Close()
	if err := snapshot.ReadTree(resp.Body, stage, snapshot.DefaultLimits); err != nil {
		return "", fmt.Errorf("copy the data of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	return controlplane.DatastoreOf(stage)
}

// StageDir is under the agent's state dir; a cluster that has not run
// yet has no pod to send it to.
func (r *podRuntime) StageDir(ctx context.Context, vc *storagev1.VirtualCluster) (string, error) {
	if !r.HasData(ctx, vc) {
		return "", errNotRunning
	}
	stage := filepath.Join(r.stateDir, "staged", vc.Namespace, vc.Name)
	if err := os.RemoveAll(stage); err != nil {
		return "", err
	}
	return stage, os.MkdirAll(stage, 0o700)
}

// ReplaceData sends staged to vc's pod, which restarts on it, and waits
// until the pod published its new start (a new data endpoint token).
func (r *podRuntime) ReplaceData(ctx context.Context, vc *storagev1.VirtualCluster, staged string) error {
	asleep := vc.Status.Phase == storagev1.PhaseSleeping
	e, awake, err := r.endpointOf(ctx, vc)
	if err != nil {
		return err
	}
	defer awake()
	if err := controlplane.TrimForReplacement(staged); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(snapshot.WriteTree(pw, staged)) }()
	resp, err := e.do(ctx, http.MethodPut, pr, http.StatusNoContent)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return fmt.Errorf("send the new data to the pod of %s/%s: %w", vc.Namespace, vc.Name, err)
	}
	resp.Body.Close()
	if asleep {
		r.log.Info("sent a new data dir to the sleeping cluster's volume; it starts on it when it wakes", "virtualcluster", klog.KObj(vc))
		return nil
	}
	r.log.Info("sent a new data dir to the pod; waiting for it to restart on it", "virtualcluster", klog.KObj(vc))
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	if _, err := r.nextEndpoint(ctx, vc, e.token); err != nil {
		return fmt.Errorf("the pod of %s/%s took the new data but did not start on it: %w", vc.Namespace, vc.Name, err)
	}
	return nil
}

// nextEndpoint waits, at most restartTimeout, until vc's pod publishes a
// data endpoint token other than old: a new start.
func (r *podRuntime) nextEndpoint(ctx context.Context, vc *storagev1.VirtualCluster, old string) (dataEndpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	for {
		next, err := r.dataEndpoint(ctx, vc)
		if err == nil && next.token != old {
			return next, nil
		}
		select {
		case <-ctx.Done():
			return dataEndpoint{}, fmt.Errorf("no new start of its pod within %s: see its logs", restartTimeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// endpointOf is vc's data endpoint. A sleeping cluster has no pod: its
// release runs one that serves the data endpoint alone (--data-only) until
// the func returned is called, which puts it back to sleep.
func (r *podRuntime) endpointOf(ctx context.Context, vc *storagev1.VirtualCluster) (dataEndpoint, func(), error) {
	e, err := r.dataEndpoint(ctx, vc)
	if err != nil || vc.Status.Phase != storagev1.PhaseSleeping {
		return e, func() {}, err
	}
	if err := r.setDataOnly(ctx, vc, true); err != nil {
		return e, func() {}, err
	}
	asleep := func() {
		// Also when ctx ended: the pod must not stay up.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.setDataOnly(ctx, vc, false); err != nil {
			r.log.Error(err, "put the sleeping cluster's data-only pod back to sleep", "virtualcluster", klog.KObj(vc))
		}
	}
	next, err := r.nextEndpoint(ctx, vc, e.token)
	if err != nil {
		asleep()
		return e, func() {}, fmt.Errorf("start a pod that serves the sleeping cluster's data: %w", err)
	}
	return next, asleep, nil
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
