package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/strvals"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/pathflag"
	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/values"
)

func newCreateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create a virtual cluster or an access key"}
	cmd.AddCommand(newCreateAccessKeyCommand())
	o := &createOptions{}
	vc := &cobra.Command{
		Use:   "vcluster NAME",
		Short: "Create a virtual cluster, wait until it is ready and switch kubectl to it",
		Example: `  sublet create vcluster demo
  sublet create vcluster team-a --cluster local --space team-a --set virtualCluster.image=rancher/k3s:v1.35.0-k3s1
  sublet create vcluster ci --values values.yaml --no-wait
  sublet create vcluster debug --from demo                      # fork of virtual cluster demo, now
  sublet create vcluster ci-2 --from vcluster-ci/ci-20261206-101500   # fork of a snapshot`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runCreate(cmd, o, args[0]) },
	}
	o.target.addFlags(vc)
	addPathFormFlag(vc, &o.pathForm)
	vc.Flags().StringVar(&o.template, "template", "", "VirtualClusterTemplate to start from.")
	pathflag.VarP(vc.Flags(), &o.valuesFile, "values", "f", "", "Values file (YAML; see the README's \"Values reference\").")
	vc.Flags().StringArrayVar(&o.sets, "set", nil, "Set a value, e.g. --set virtualCluster.image=rancher/k3s:v1.35.0-k3s1 (repeatable).")
	vc.Flags().StringVar(&o.from, "from", "", "Fork: start from a virtual cluster's state now (its NAME, snapshotted first) or from a snapshot (NAME, or NAMESPACE/NAME), with a new identity: its own CA, keys, tokens and cluster ID. Values and template default to the source's.")
	vc.Flags().BoolVar(&o.noWait, "no-wait", false, "Return once the object is created.")
	vc.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "How long to wait for Ready.")
	cmd.AddCommand(vc)
	return cmd
}

// valuesDocument merges a values file and --set flags into one YAML doc.
// The file is read as strictly as the agent reads values; a --set path
// given twice is an error, not "the last one wins".
func valuesDocument(file string, sets []string) (string, error) {
	vals := map[string]interface{}{}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--values: %w", err)
		}
		if vals, err = values.Parse(string(data)); err != nil {
			return "", fmt.Errorf("--values %s: %w", file, err)
		}
	}
	setBy := map[string]string{}
	for _, s := range sets {
		one := map[string]interface{}{}
		if err := strvals.ParseInto(s, one); err != nil {
			return "", fmt.Errorf("--set %s: %w", s, err)
		}
		for _, p := range leafPaths(one, "") {
			if prev, dup := setBy[p]; dup {
				return "", fmt.Errorf("--set sets %s twice (%s and %s); keep one", p, prev, s)
			}
			setBy[p] = s
		}
		if err := strvals.ParseInto(s, vals); err != nil {
			return "", fmt.Errorf("--set %s: %w", s, err)
		}
	}
	if len(vals) == 0 {
		return "", nil
	}
	out, err := yaml.Marshal(vals)
	return string(out), err
}

// leafPaths lists the dotted paths of m's scalar and list values.
func leafPaths(m map[string]interface{}, prefix string) []string {
	var paths []string
	for k, v := range m {
		p := prefix + k
		if sub, ok := v.(map[string]interface{}); ok {
			paths = append(paths, leafPaths(sub, p+".")...)
			continue
		}
		paths = append(paths, p)
	}
	return paths
}

// validateTarget refuses, before anything is created, a name or --space
// the runtime could not run.
func validateTarget(name, space string) error {
	if msgs := translate.ValidateVClusterName(name); len(msgs) > 0 {
		return fmt.Errorf("virtual cluster name %q %s; choose another name", name, strings.Join(msgs, "; "))
	}
	if space != "" {
		if msgs := translate.ValidateHostNamespace(space); len(msgs) > 0 {
			return fmt.Errorf("--space %q is not a namespace name: %s", space, strings.Join(msgs, "; "))
		}
	}
	return nil
}

// ownedNamespace is a host namespace Sublet creates for virtual cluster
// vcluster: the agent keeps its pod security labels.
func ownedNamespace(ns, vcluster string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{storagev1.LabelNamespaceFor: vcluster}}}
}

// ensureNamespace creates namespace ns in the cluster, or uses it if it
// exists (or the user may not create namespaces but may use it).
func ensureNamespace(ctx context.Context, c *loginConfig, cluster, ns, vcluster string) error {
	kube, err := kubernetes.NewForConfig(c.restConfig("/kubernetes/cluster/" + cluster))
	if err != nil {
		return err
	}
	_, err = kube.CoreV1().Namespaces().Create(ctx, ownedNamespace(ns, vcluster), metav1.CreateOptions{})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsForbidden(err):
		return nil // the VirtualCluster create says whether the user may use it
	}
	return fmt.Errorf("create namespace %s: %w", ns, err)
}

// createOptions are the flags of `sublet create vcluster`.
type createOptions struct {
	target               vclusterTarget
	template, valuesFile string
	from                 string
	sets                 []string
	noWait, pathForm     bool
	timeout              time.Duration
}

// runCreate creates virtual cluster name, waits until it is ready and
// switches kubectl to it.
func runCreate(cmd *cobra.Command, o *createOptions, name string) error {
	if err := validateTarget(name, o.target.space); err != nil {
		return err
	}
	c, err := loadLogin()
	if err != nil {
		return err
	}
	doc, err := valuesDocument(o.valuesFile, o.sets)
	if err != nil {
		return err
	}
	if _, err := values.Merge(values.Layer{Source: "values", YAML: doc}); err != nil {
		return err
	}
	ctx := cmd.Context()
	cluster, ns, err := o.target.resolve(ctx, c, name)
	if err != nil {
		return err
	}
	if err := ensureNamespace(ctx, c, cluster, ns, name); err != nil {
		return err
	}
	cl, err := c.clusterClient(cluster)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	obj := &storagev1.VirtualCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if o.from != "" {
		if obj, err = forkOf(ctx, out, cl, name, ns, o.from, o.timeout); err != nil {
			return err
		}
	}
	if doc != "" {
		obj.Spec.HelmRelease = &storagev1.VirtualClusterHelmRelease{Values: doc}
	}
	if o.template != "" {
		obj.Spec.TemplateRef = &storagev1.TemplateRef{Name: o.template}
	}
	if err := cl.Create(ctx, obj); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("virtual cluster %s already exists in namespace %s of cluster %s (sublet use vcluster %s)", name, ns, cluster, name)
		}
		return fmt.Errorf("create virtual cluster %s: %w", name, err)
	}
	fmt.Fprintf(out, "Creating virtual cluster %s in namespace %s of cluster %s\n", name, ns, cluster)
	if o.noWait {
		return nil
	}
	if from := obj.Annotations[storagev1.AnnotationForkFrom]; from != "" {
		if err := waitSeeded(ctx, cl, ns, name, storagev1.AnnotationForkFrom, from, o.timeout); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, out, cl, ns, name, o.timeout); err != nil {
		if errors.Is(err, errInterrupted) {
			return fmt.Errorf("interrupted while waiting: virtual cluster %s keeps starting in the background; 'sublet use vcluster %s' switches kubectl to it once it is ready, 'sublet delete vcluster %s' removes it", name, name, name)
		}
		return err
	}
	ctxName, err := useContext(ctx, c, cluster, ns, name, o.pathForm)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Virtual cluster %s is ready; kubectl now uses context %s\nTry: kubectl get namespaces\n", name, ctxName)
	return nil
}
