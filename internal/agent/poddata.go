package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	if vc.Status.Phase == storagev1.PhaseSleeping {
		return "", fmt.Errorf("virtual cluster %s/%s is asleep: the pod runtime copies the data of its running pod; wake it and snapshot again", vc.Namespace, vc.Name)
	}
	e, err := r.dataEndpoint(ctx, vc)
	if err != nil {
		return "", err
	}
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
	if vc.Status.Phase == storagev1.PhaseSleeping {
		return fmt.Errorf("virtual cluster %s/%s is asleep: the pod runtime restores into its running pod; wake it and restore again", vc.Namespace, vc.Name)
	}
	e, err := r.dataEndpoint(ctx, vc)
	if err != nil {
		return err
	}
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
	r.log.Info("sent a new data dir to the pod; waiting for it to restart on it", "virtualcluster", klog.KObj(vc))
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	for {
		next, err := r.dataEndpoint(ctx, vc)
		if err == nil && next.token != e.token {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the pod of %s/%s took the new data but did not start on it within %s: see its logs", vc.Namespace, vc.Name, restartTimeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
