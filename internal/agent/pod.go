package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/charts"
	"github.com/sublet-dev/sublet/internal/controlplane/readiness"
)

// podRuntime runs each virtual cluster as a StatefulSet in its namespace,
// installed as a Helm release of charts/vcluster (release name = the
// VirtualCluster's name). The pod writes its admin kubeconfig into secret
// vc-NAME; the agent probes the API server through it.
type podRuntime struct {
	hostCfg *rest.Config
	host    kubernetes.Interface
	chart   *chart.Chart
	image   map[string]interface{}
	// stateDir holds the data dirs prepared for restores and forks
	// before they go to their pods.
	stateDir string
	log      klog.Logger
	// data: the clusters whose data the agent reads or replaces now.
	data dataLocks
}

func newPodRuntime(hostCfg *rest.Config, host kubernetes.Interface, image, stateDir string, log klog.Logger) (*podRuntime, error) {
	c, err := charts.VCluster()
	if err != nil {
		return nil, fmt.Errorf("load the vcluster chart: %w", err)
	}
	r := &podRuntime{hostCfg: hostCfg, host: host, chart: c, stateDir: stateDir, log: log}
	if image != "" {
		repo, tag := splitImage(image)
		r.image = map[string]interface{}{"repository": repo, "tag": tag}
	}
	return r, nil
}

func (r *podRuntime) Name() string { return "pod" }

// helm returns a Helm action configuration for namespace.
func (r *podRuntime) helm(namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.Namespace = &namespace
	flags.WrapConfigFn = func(*rest.Config) *rest.Config { return rest.CopyConfig(r.hostCfg) }
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, namespace, "secret", func(format string, v ...interface{}) {
		r.log.V(2).Info(fmt.Sprintf(format, v...))
	}); err != nil {
		return nil, err
	}
	return cfg, nil
}

// releaseValues are the chart values for vc with extra run args.
func (r *podRuntime) releaseValues(args []string) map[string]interface{} {
	a := make([]interface{}, len(args))
	for i, s := range args {
		a[i] = s
	}
	vals := map[string]interface{}{"args": a, "replicas": 1}
	if r.image != nil {
		vals["image"] = r.image
	}
	return vals
}

func (r *podRuntime) Ensure(ctx context.Context, vc *storagev1.VirtualCluster, args []string) (State, error) {
	cfg, err := r.helm(vc.Namespace)
	if err != nil {
		return State{}, err
	}
	vals := r.releaseValues(args)
	rel, err := action.NewGet(cfg).Run(vc.Name)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		install := action.NewInstall(cfg)
		install.ReleaseName, install.Namespace = vc.Name, vc.Namespace
		install.Timeout = time.Minute
		if _, err := install.RunWithContext(ctx, r.chart, vals); err != nil {
			return State{}, fmt.Errorf("install the vcluster chart: %w", err)
		}
		r.log.Info("installed release", "virtualcluster", klog.KObj(vc))
		return State{Message: "installed; waiting for the virtual cluster pod"}, nil
	case err != nil:
		return State{}, err
	case !sameValues(rel.Config, vals) || rel.Chart.Metadata.Version != r.chart.Metadata.Version:
		upgrade := action.NewUpgrade(cfg)
		upgrade.Namespace, upgrade.Timeout, upgrade.MaxHistory = vc.Namespace, time.Minute, 5
		if _, err := upgrade.RunWithContext(ctx, vc.Name, r.chart, vals); err != nil {
			return State{}, fmt.Errorf("upgrade the vcluster release: %w", err)
		}
		return State{Message: "upgraded; waiting for the virtual cluster pod"}, nil
	}
	s, err := r.host.CoreV1().Secrets(vc.Namespace).Get(ctx, kubeconfigSecret(vc), metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return State{Message: "waiting for the virtual cluster pod to publish its kubeconfig"}, nil
		}
		return State{}, err
	}
	// The pod's data dir is out of reach: the whole check, always.
	return probeKubeconfig(ctx, s.Data["config"], readiness.Path(false))
}

// Sleep scales vc's StatefulSet to 0 (the release keeps its other values,
// and its claim keeps the data) and reports stopped once its pod is gone.
func (r *podRuntime) Sleep(ctx context.Context, vc *storagev1.VirtualCluster) (bool, error) {
	cfg, err := r.helm(vc.Namespace)
	if err != nil {
		return false, err
	}
	rel, err := action.NewGet(cfg).Run(vc.Name)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	if dataOnly(rel.Config) && r.dataBusy(vc) {
		// A snapshot or restore reads its volume; it puts it back to 0.
		// One left by an agent that stopped is put back below.
		return true, nil
	}
	if dataOnly(rel.Config) {
		if err := r.setDataOnly(ctx, vc, false); err != nil {
			return false, err
		}
		return false, nil
	}
	if fmt.Sprint(rel.Config["replicas"]) != "0" {
		vals := maps.Clone(rel.Config)
		vals["replicas"] = 0
		upgrade := action.NewUpgrade(cfg)
		upgrade.Namespace, upgrade.Timeout, upgrade.MaxHistory = vc.Namespace, time.Minute, 5
		if _, err := upgrade.RunWithContext(ctx, vc.Name, r.chart, vals); err != nil {
			return false, fmt.Errorf("scale the vcluster release to 0: %w", err)
		}
	}
	_, err = r.host.CoreV1().Pods(vc.Namespace).Get(ctx, vc.Name+"-0", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}

func (r *podRuntime) Delete(ctx context.Context, vc *storagev1.VirtualCluster) error {
	cfg, err := r.helm(vc.Namespace)
	if err != nil {
		return err
	}
	uninstall := action.NewUninstall(cfg)
	uninstall.Timeout = time.Minute
	if _, err := uninstall.Run(vc.Name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("uninstall the vcluster release: %w", err)
	}
	// A StatefulSet's claims outlive it; the data goes with the cluster.
	err = r.host.CoreV1().PersistentVolumeClaims(vc.Namespace).Delete(ctx, "data-"+vc.Name+"-0", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// sameValues compares chart values as the release stores them (JSON: a
// stored 1 reads back as a float).
func sameValues(a, b map[string]interface{}) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// splitImage splits REPO:TAG (a registry port is part of REPO).
func splitImage(image string) (repo, tag string) {
	for i := len(image) - 1; i >= 0; i-- {
		switch image[i] {
		case ':':
			return image[:i], image[i+1:]
		case '/':
			return image, ""
		}
	}
	return image, ""
}
