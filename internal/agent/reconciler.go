package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/syncer/kinds"
	"github.com/sublet-dev/sublet/internal/translate"
	"github.com/sublet-dev/sublet/internal/values"
)

// finalizer keeps a VirtualCluster until its runtime, data and host objects
// are gone.
const finalizer = "storage.loft.sh/cleanup"

// How often a Ready virtual cluster is checked (the process runtime
// restarts a child that exited), and how often one that is coming up.
const (
	superviseEvery = 10 * time.Second
	deployingEvery = 100 * time.Millisecond
)

// reconciler drives VirtualCluster objects to their runtime's state.
type reconciler struct {
	client          client.Client
	host            kubernetes.Interface
	runtime         Runtime
	recorder        events.EventRecorder
	defaultTemplate string
	// clock is the time sleep mode decides at (time.Now; tests inject).
	clock func() time.Time
	log   klog.Logger
	// keptAsleep: sleeping clusters this agent has seen (by UID), to log
	// once that it keeps them asleep.
	keptAsleep sync.Map
	// crds are host CRDs read for condition HostKindsServed.
	crds crdCache
	// snaps reads snapshots for restore-from and fork-from.
	snaps *snapshots
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	vc := &storagev1.VirtualCluster{}
	if err := r.client.Get(ctx, req.NamespacedName, vc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !vc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.delete(ctx, vc)
	}
	if controllerutil.AddFinalizer(vc, finalizer) {
		if err := r.client.Update(ctx, vc); err != nil {
			return ctrl.Result{}, err
		}
	}
	old := vc.Status.DeepCopy()
	result, err := r.reconcileAwakeOrAsleep(ctx, vc)
	vc.Status.ObservedGeneration = vc.Generation
	vc.Status.Runtime = r.runtime.Name()
	if !equalStatus(old, &vc.Status) {
		if uerr := r.client.Status().Update(ctx, vc); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		return ctrl.Result{}, err // retried with backoff
	}
	return result, nil
}

// reconcileAwakeOrAsleep applies sleep mode, then, unless the cluster
// sleeps, runs it.
func (r *reconciler) reconcileAwakeOrAsleep(ctx context.Context, vc *storagev1.VirtualCluster) (ctrl.Result, error) {
	tmpls, err := r.templates(ctx, vc)
	if err != nil {
		r.setCondition(vc, storagev1.ConditionValuesValid, false, "InvalidValues", err.Error())
		r.setPhase(vc, storagev1.PhaseFailed, "InvalidValues", "invalid values: "+err.Error()+"; fix them and apply again")
		return ctrl.Result{}, nil
	}
	if ok, err := r.seed(ctx, vc); !ok || err != nil {
		return ctrl.Result{}, err
	}
	scheduled, err := r.scheduleSnapshots(ctx, vc, tmpls)
	if err != nil {
		return ctrl.Result{}, err
	}
	sleep, err := r.sleepMode(ctx, vc, tmpls)
	if err != nil || sleep.asleep {
		return ctrl.Result{RequeueAfter: sooner(sleep.after, scheduled)}, err
	}
	result, err := r.reconcile(ctx, vc, tmpls)
	result.RequeueAfter = sooner(sooner(result.RequeueAfter, sleep.after), scheduled)
	return result, err
}

// sooner is the sooner of two requeue delays, 0 meaning none.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

func (r *reconciler) reconcile(ctx context.Context, vc *storagev1.VirtualCluster, tmpls []template) (ctrl.Result, error) {
	eff, err := r.admit(ctx, vc, tmpls)
	if eff == nil || err != nil {
		return ctrl.Result{}, err
	}
	if err := r.grantCustomRights(ctx, vc, eff.Values.CustomResources()); err != nil {
		return ctrl.Result{}, err
	}
	r.checkHostKinds(ctx, vc, eff)
	state, err := r.runtime.Ensure(ctx, vc, eff.RunArgs())
	if err != nil {
		r.setCondition(vc, storagev1.ConditionRuntimeReady, false, "RuntimeError", err.Error())
		r.setPhase(vc, storagev1.PhaseFailed, "RuntimeError", err.Error())
		return ctrl.Result{}, err
	}
	vc.Status.Endpoint = state.Endpoint
	if err := reconcileIsolation(ctx, r.client, vc, eff.Values.Isolation, state.Endpoint); err != nil {
		r.setCondition(vc, storagev1.ConditionIsolationApplied, false, "IsolationError", err.Error())
		if apierrors.IsInvalid(err) {
			r.setPhase(vc, storagev1.PhaseFailed, "IsolationError", err.Error()+"; fix isolation.* in the values and apply again")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if err := labelOwnedNamespace(ctx, r.client, vc, eff.Values.Isolation.PodSecurityLevel()); err != nil {
		return ctrl.Result{}, err
	}
	r.setCondition(vc, storagev1.ConditionIsolationApplied, true, "Applied", "the host namespace's guard rails match isolation.*")
	return r.report(ctx, vc, state)
}

// admit checks vc's name, values and isolation against its templates and
// returns its effective values, or nil when vc is refused (its status says
// why).
func (r *reconciler) admit(ctx context.Context, vc *storagev1.VirtualCluster, tmpls []template) (*values.Effective, error) {
	// A name the runtime would refuse fails here, before anything starts.
	if msgs := translate.ValidateVClusterName(vc.Name); len(msgs) > 0 {
		msg := fmt.Sprintf("metadata.name %q %s; names cannot change: create the virtual cluster again under a valid name and delete this one", vc.Name, strings.Join(msgs, "; "))
		if r.setCondition(vc, storagev1.ConditionConfigurationValid, false, "InvalidName", msg) {
			r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, "InvalidName", "Deploy", msg)
		}
		r.setPhase(vc, storagev1.PhaseFailed, "InvalidName", msg)
		return nil, nil
	}
	eff, err := effectiveValues(vc, tmpls)
	if err != nil {
		r.setCondition(vc, storagev1.ConditionValuesValid, false, "InvalidValues", err.Error())
		r.setPhase(vc, storagev1.PhaseFailed, "InvalidValues", "invalid values: "+err.Error()+"; fix them and apply again")
		return nil, nil
	}
	r.setCondition(vc, storagev1.ConditionValuesValid, true, "Valid", "values parsed and validated")
	vc.Status.EffectiveValues = eff.YAML
	msg, err := r.loosens(ctx, vc, tmpls, eff)
	if err != nil {
		return nil, fmt.Errorf("compare isolation with the templates': %w", err)
	}
	if msg != "" {
		// Refused before the runtime or the host namespace is touched.
		if r.setCondition(vc, storagev1.ConditionIsolationAllowed, false, ReasonLoosensIsolation, msg) {
			r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, ReasonLoosensIsolation, "Deploy", msg)
		}
		r.setPhase(vc, storagev1.PhaseFailed, ReasonLoosensIsolation, msg)
		return nil, nil
	}
	r.setCondition(vc, storagev1.ConditionIsolationAllowed, true, "Allowed", "the values loosen no isolation setting of the cluster default and template")
	if eff.Version.Fallback {
		msg := fmt.Sprintf("image %s asks for Kubernetes %s, which this Sublet does not ship; running %s, the nearest shipped version",
			eff.Values.VirtualCluster.Image, eff.Version.Asked, eff.Version.Run)
		if r.setCondition(vc, storagev1.ConditionVersionFallback, true, "NearestShippedVersion", msg) {
			r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, "VersionFallback", "Deploy", msg)
		}
	} else {
		meta.RemoveStatusCondition(&vc.Status.Conditions, storagev1.ConditionVersionFallback)
	}
	return eff, nil
}

// report records the runtime's state in vc's status.
func (r *reconciler) report(ctx context.Context, vc *storagev1.VirtualCluster, state State) (ctrl.Result, error) {
	if state.Refused {
		msg := state.Message + "; fix the values and apply again"
		if r.setCondition(vc, storagev1.ConditionConfigurationValid, false, "RefusedByRuntime", msg) {
			r.recorder.Eventf(vc, nil, corev1.EventTypeWarning, "RefusedConfiguration", "Deploy", state.Message)
		}
		r.setCondition(vc, storagev1.ConditionRuntimeReady, false, "RefusedByRuntime", state.Message)
		r.setCondition(vc, storagev1.ConditionReady, false, "RefusedByRuntime", state.Message)
		r.setPhase(vc, storagev1.PhaseFailed, "RefusedByRuntime", msg)
		return ctrl.Result{}, nil
	}
	if q, pending := seedPending(vc); state.Ready && pending && r.snaps != nil {
		// Its runtime takes the snapshot's data now that it runs: not
		// Ready on data that is not the snapshot's.
		state = State{Message: fmt.Sprintf("running; the %s from %s comes next", q.verb(), q.from)}
	}
	if !state.Ready {
		meta.RemoveStatusCondition(&vc.Status.Conditions, storagev1.ConditionConfigurationValid)
		r.setCondition(vc, storagev1.ConditionRuntimeReady, false, "Deploying", state.Message)
		r.setCondition(vc, storagev1.ConditionReady, false, "Deploying", state.Message)
		r.setPhase(vc, storagev1.PhaseDeploying, "Deploying", state.Message)
		return ctrl.Result{RequeueAfter: deployingEvery}, nil
	}
	if err := r.publishKubeconfig(ctx, vc, state.Kubeconfig); err != nil {
		return ctrl.Result{}, err
	}
	vc.Status.KubernetesVersion = state.Version
	r.setCondition(vc, storagev1.ConditionConfigurationValid, true, "Valid", "the runtime runs with this name and configuration")
	r.setCondition(vc, storagev1.ConditionRuntimeReady, true, "Running", "the virtual API server is ready")
	if r.setCondition(vc, storagev1.ConditionReady, true, "Ready", "the virtual cluster is ready") {
		r.recorder.Eventf(vc, nil, corev1.EventTypeNormal, "Ready", "Deploy", "virtual cluster is ready (Kubernetes %s); its admin kubeconfig is in secret %s", state.Version, kubeconfigSecret(vc))
	}
	r.setPhase(vc, storagev1.PhaseReady, "Ready", "")
	return ctrl.Result{RequeueAfter: superviseEvery}, nil
}

// template is a VirtualClusterTemplate a virtual cluster starts from, and
// in which role ("default template" or "template").
type template struct {
	*storagev1.VirtualClusterTemplate
	role string
}

// templates returns the cluster's default template and the template vc
// refers to, in that order (either may be absent).
func (r *reconciler) templates(ctx context.Context, vc *storagev1.VirtualCluster) ([]template, error) {
	def, err := r.defaultTemplateName(ctx)
	if err != nil {
		return nil, err
	}
	var out []template
	for _, t := range []struct{ name, role string }{{def, "default template"}, {templateName(vc), "template"}} {
		if t.name == "" {
			continue
		}
		tmpl := &storagev1.VirtualClusterTemplate{}
		if err := r.client.Get(ctx, types.NamespacedName{Name: t.name}, tmpl); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("%s %q does not exist", t.role, t.name)
			}
			return nil, err
		}
		out = append(out, template{tmpl, t.role})
	}
	return out, nil
}

// effectiveValues merges the templates' values (default template first)
// and the object's own.
func effectiveValues(vc *storagev1.VirtualCluster, tmpls []template) (*values.Effective, error) {
	layers := templateLayers(tmpls)
	if vc.Spec.HelmRelease != nil {
		layers = append(layers, values.Layer{Source: "spec.helmRelease.values", YAML: vc.Spec.HelmRelease.Values})
	}
	return values.Merge(layers...)
}

// templateLayers are the values layers of tmpls, in order.
func templateLayers(tmpls []template) []values.Layer {
	var layers []values.Layer
	for _, t := range tmpls {
		layers = append(layers, values.Layer{Source: fmt.Sprintf("%s %q", t.role, t.Name), YAML: t.Spec.Template.HelmRelease.Values})
	}
	return layers
}

// defaultTemplateName is --default-template, else the one template
// annotated storagev1.AnnotationDefaultTemplate="true", else none.
func (r *reconciler) defaultTemplateName(ctx context.Context) (string, error) {
	if r.defaultTemplate != "" {
		return r.defaultTemplate, nil
	}
	list := &storagev1.VirtualClusterTemplateList{}
	if err := r.client.List(ctx, list); err != nil {
		return "", err
	}
	var marked []string
	for _, t := range list.Items {
		if t.Annotations[storagev1.AnnotationDefaultTemplate] == "true" {
			marked = append(marked, t.Name)
		}
	}
	switch len(marked) {
	case 0:
		return "", nil
	case 1:
		return marked[0], nil
	}
	sort.Strings(marked)
	return "", fmt.Errorf("templates %s are all annotated %s=true; mark one", strings.Join(marked, ", "), storagev1.AnnotationDefaultTemplate)
}

func templateName(vc *storagev1.VirtualCluster) string {
	if vc.Spec.TemplateRef == nil {
		return ""
	}
	return vc.Spec.TemplateRef.Name
}

func kubeconfigSecret(vc *storagev1.VirtualCluster) string {
	return storagev1.KubeconfigSecretName(vc.Name)
}

// publishKubeconfig writes the admin kubeconfig into secret vc-NAME, key
// config, owned by vc.
func (r *reconciler) publishKubeconfig(ctx context.Context, vc *storagev1.VirtualCluster, kubeconfig []byte) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: kubeconfigSecret(vc), Namespace: vc.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.client, s, func() error {
		s.Labels = map[string]string{storagev1.LabelManagedBy: storagev1.AgentName, storagev1.LabelVirtualCluster: vc.Name}
		s.Type = corev1.SecretTypeOpaque
		// Other keys are the runtime's (the pod's data endpoint token).
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data["config"] = kubeconfig
		return controllerutil.SetControllerReference(vc, s, r.client.Scheme())
	})
	if err != nil {
		return fmt.Errorf("publish the admin kubeconfig in secret %s: %w", s.Name, err)
	}
	vc.Status.KubeconfigSecret = s.Name
	return nil
}

// delete stops the runtime, removes every host object the virtual cluster
// owned in its namespace, then lets the object go.
func (r *reconciler) delete(ctx context.Context, vc *storagev1.VirtualCluster) error {
	if !controllerutil.ContainsFinalizer(vc, finalizer) {
		return nil
	}
	if err := r.runtime.Delete(ctx, vc); err != nil {
		return fmt.Errorf("stop the virtual cluster: %w", err)
	}
	if err := deleteHostObjects(ctx, r.host, vc.Namespace, vc.Name, r.customRowsAtDelete(ctx, vc)); err != nil {
		return err
	}
	// The process runtime's Delete removed them too; the pod runtime's
	// Helm release never had them.
	if err := deleteCustomRights(ctx, r.host, vc); err != nil {
		return err
	}
	// Owned by vc, but gone now rather than after the garbage collector.
	if err := reconcileIsolation(ctx, r.client, vc, values.Isolation{}, ""); err != nil {
		return err
	}
	// Owned by vc, but deleted now rather than by the garbage collector
	// later: a kubeconfig of a deleted cluster must not linger.
	err := r.host.CoreV1().Secrets(vc.Namespace).Delete(ctx, kubeconfigSecret(vc), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete secret %s: %w", kubeconfigSecret(vc), err)
	}
	r.recorder.Eventf(vc, nil, corev1.EventTypeNormal, "Deleted", "Delete", "virtual cluster stopped; its data and host objects are removed")
	controllerutil.RemoveFinalizer(vc, finalizer)
	return r.client.Update(ctx, vc)
}

// deleteHostObjects removes every object the syncer of virtual cluster name
// made in namespace: its objects of each kind the kinds table deletes with
// the cluster, and of each custom row synced to the host.
func deleteHostObjects(ctx context.Context, host kubernetes.Interface, namespace, name string, custom []kinds.Custom) error {
	selector := translate.LabelCopyOf + "=" + name
	for _, k := range kinds.All() {
		if !k.DeleteWithCluster {
			continue
		}
		if err := deleteCollection(ctx, host.CoreV1().RESTClient(), k.Host, namespace, selector); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete the virtual cluster's host %s: %w", k.Name, err)
		}
	}
	// The Secrets host controllers wrote for its custom objects, once
	// returned to it.
	returned := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	if err := deleteCollection(ctx, host.CoreV1().RESTClient(), returned, namespace, translate.LabelReturnedTo+"="+name); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the Secrets returned to the virtual cluster: %w", err)
	}
	return deleteCustomObjects(ctx, host, namespace, selector, custom)
}

// deleteCollection deletes the objects of resource r in namespace that
// selector selects, one by one where the resource has no deletecollection
// (services). The table names kinds by resource, so the requests are made
// by path; any of the host clientset's REST clients can send them.
func deleteCollection(ctx context.Context, c rest.Interface, r schema.GroupVersionResource, namespace, selector string) error {
	err := c.Delete().AbsPath(collectionPath(r, namespace)).Param("labelSelector", selector).Do(ctx).Error()
	if !apierrors.IsMethodNotSupported(err) {
		return err
	}
	return deleteEach(ctx, c, r, namespace, selector)
}

// deleteEach deletes the objects of resource r in namespace that selector
// selects, one by one.
func deleteEach(ctx context.Context, c rest.Interface, r schema.GroupVersionResource, namespace, selector string) error {
	collection := collectionPath(r, namespace)
	raw, err := c.Get().AbsPath(collection).Param("labelSelector", selector).SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return err
	}
	var list metav1.PartialObjectMetadataList
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("read the list of %s: %w", r.Resource, err)
	}
	for _, o := range list.Items {
		if err := c.Delete().AbsPath(collection, o.Name).Do(ctx).Error(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// collectionPath is the path of resource r in namespace.
func collectionPath(r schema.GroupVersionResource, namespace string) string {
	base := "/apis/" + r.Group + "/" + r.Version
	if r.Group == "" {
		base = "/api/" + r.Version
	}
	return path.Join(base, "namespaces", namespace, r.Resource)
}

// setCondition sets a condition and reports whether its status changed.
func (r *reconciler) setCondition(vc *storagev1.VirtualCluster, typ string, ok bool, reason, msg string) bool {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return meta.SetStatusCondition(&vc.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: vc.Generation,
	}) && meta.IsStatusConditionPresentAndEqual(vc.Status.Conditions, typ, status)
}

func (r *reconciler) setPhase(vc *storagev1.VirtualCluster, phase storagev1.VirtualClusterPhase, reason, msg string) {
	vc.Status.Phase, vc.Status.Reason, vc.Status.Message = phase, reason, msg
}

func equalStatus(a, b *storagev1.VirtualClusterStatus) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}
