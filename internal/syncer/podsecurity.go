package syncer

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/sublet-dev/sublet/internal/syncer/kinds"
)

// Pod security labels a virtual namespace carries, so the virtual API
// server's own admission tells the tenant at apply time.
const (
	labelEnforce        = psapi.EnforceLevelLabel
	labelEnforceVersion = psapi.EnforceVersionLabel
)

// DefaultPodSecurityStandard is the level of a virtual cluster whose
// values do not name one: an admin sets privileged explicitly.
const DefaultPodSecurityStandard = kinds.DefaultPodSecurityStandard

// ReasonPodSecurity is the event and condition reason of a pod the syncer
// keeps off the host because it violates the cluster's pod security level.
const ReasonPodSecurity = "ForbiddenByPodSecurity"

// PodSecurity checks pods against a Pod Security Standards level with the
// upstream evaluator before they reach the host. The tenant cannot switch
// it off: it does not read the virtual namespace's labels.
type PodSecurity struct {
	level psapi.LevelVersion
	eval  policy.Evaluator
}

// NewPodSecurity returns a checker for level: privileged, baseline or
// restricted, at the latest version of the standards.
func NewPodSecurity(level string) (*PodSecurity, error) {
	l, err := psapi.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("pod security standard %q: must be privileged, baseline or restricted", level)
	}
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, err
	}
	return &PodSecurity{level: psapi.LevelVersion{Level: l, Version: psapi.LatestVersion()}, eval: eval}, nil
}

// Level is the level pods are checked against.
func (p *PodSecurity) Level() string { return string(p.level.Level) }

// Check returns "" if a pod with this metadata and spec may run, else what
// it violates, worded as the API server's admission does.
func (p *PodSecurity) Check(meta *metav1.ObjectMeta, spec *corev1.PodSpec) string {
	if p.level.Level == psapi.LevelPrivileged {
		return ""
	}
	res := policy.AggregateCheckResults(p.eval.EvaluatePod(p.level, meta, spec))
	if res.Allowed {
		return ""
	}
	return fmt.Sprintf("violates PodSecurity %q: %s", p.level.String(), res.ForbiddenDetail())
}

// refusePod records that virtual pod v stays off the host: a Warning
// event, and condition PodScheduled=False naming why, as a scheduler
// reports a pod it cannot place. The pod stays Pending.
func refusePod(ctx context.Context, c *Context, v *corev1.Pod, reason, msg string) error {
	c.event(v, corev1.EventTypeWarning, reason, "not run on the host: "+msg)
	for _, cond := range v.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Reason == reason && cond.Message == msg {
			return nil
		}
	}
	nv := v.DeepCopy()
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: reason,
		Message: msg, LastTransitionTime: metav1.Now()}
	replaced := false
	for i := range nv.Status.Conditions {
		if nv.Status.Conditions[i].Type == corev1.PodScheduled {
			nv.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		nv.Status.Conditions = append(nv.Status.Conditions, cond)
	}
	nv.Status.Phase = corev1.PodPending
	if _, err := c.Virtual.CoreV1().Pods(v.Namespace).UpdateStatus(ctx, nv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("report why the pod is not run on the host: %w", err)
	}
	return nil
}

// namespaceLabeler labels every virtual namespace that has no enforce
// label with the cluster's level, so the virtual API server refuses at
// apply time what the host would not run. A tenant (cluster-admin of its
// cluster) may relabel a namespace; that relaxes only the virtual side:
// the host check never reads the label.
type namespaceLabeler struct {
	client   kubernetes.Interface
	level    string
	informer cache.SharedIndexInformer
	log      klog.Logger
}

func newNamespaceLabeler(sctx *Context, vf informers.SharedInformerFactory) *namespaceLabeler {
	return &namespaceLabeler{client: sctx.Virtual, level: sctx.PodSecurity.Level(), informer: vf.Core().V1().Namespaces().Informer(),
		log: sctx.Log.WithName("podsecurity")}
}

func (l *namespaceLabeler) Name() string { return "podsecurity" }

func (l *namespaceLabeler) Run(ctx context.Context) error {
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(obj interface{}) {
		if ns, ok := obj.(*corev1.Namespace); ok && !l.labelled(ns) {
			queue.Add(ns.Name)
		}
	}
	if _, err := l.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
	}); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q,%q:"latest"}}}`, labelEnforce, l.level, labelEnforceVersion)
	for {
		name, quit := queue.Get()
		if quit {
			return nil
		}
		_, err := l.client.CoreV1().Namespaces().Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			queue.Forget(name)
		default:
			l.log.Error(err, "label namespace with the pod security level", "namespace", name)
			queue.AddRateLimited(name)
		}
		queue.Done(name)
	}
}

func (l *namespaceLabeler) labelled(ns *corev1.Namespace) bool {
	_, set := ns.Labels[labelEnforce]
	return set || ns.DeletionTimestamp != nil
}
