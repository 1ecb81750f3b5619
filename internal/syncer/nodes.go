package syncer

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const (
	// indexPodNode indexes virtual pods by spec.nodeName.
	indexPodNode = "sublet-node-name"
	// labelVirtualNode marks the virtual nodes the syncer made.
	labelVirtualNode = "sublet.dev/synced-node"
)

// nodeSyncer shows, in the virtual cluster, each host node that runs one of
// its pods: a copy of the host node's labels and status, removed when no
// virtual pod uses it any more. It reads host nodes and writes nothing on
// the host.
type nodeSyncer struct {
	sctx    *Context
	pods    cache.Indexer
	hostInf cache.SharedIndexInformer
	virtInf cache.SharedIndexInformer
	hostF   informers.SharedInformerFactory
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *Metrics
}

func newNodeSyncer(_ string, sctx *Context, f factories, _ map[string]bool, m *Metrics) Runnable {
	vf := f.virtual
	hostF := informers.NewSharedInformerFactory(sctx.Host, 10*time.Hour)
	s := &nodeSyncer{
		sctx:    sctx,
		hostInf: hostF.Core().V1().Nodes().Informer(),
		virtInf: vf.Core().V1().Nodes().Informer(),
		hostF:   hostF,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "sync-nodes"}),
		metrics: m,
	}
	pods := podInformer(vf)
	if _, ok := pods.GetIndexer().GetIndexers()[indexPodNode]; !ok {
		_ = pods.AddIndexers(cache.Indexers{indexPodNode: func(obj interface{}) ([]string, error) {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				return []string{p.Spec.NodeName}, nil
			}
			return nil, nil
		}})
	}
	s.pods = pods.GetIndexer()
	nodeName := func(obj interface{}) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		switch o := obj.(type) {
		case *corev1.Pod:
			if o.Spec.NodeName != "" {
				s.queue.Add(o.Spec.NodeName)
			}
		case *corev1.Node:
			s.queue.Add(o.Name)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: nodeName, UpdateFunc: func(o, n interface{}) { nodeName(o); nodeName(n) }, DeleteFunc: nodeName,
	}
	for _, inf := range []cache.SharedIndexInformer{pods, s.hostInf, s.virtInf} {
		_, _ = inf.AddEventHandler(handler)
	}
	return s
}

func (s *nodeSyncer) Name() string { return "nodes" }

func (s *nodeSyncer) Run(ctx context.Context) error {
	s.hostF.Start(ctx.Done())
	defer s.hostF.Shutdown()
	return runQueue(ctx, "nodes", s.queue, 4, s.metrics, s.sctx, []cache.InformerSynced{s.hostInf.HasSynced, s.virtInf.HasSynced}, nil, s.reconcile)
}

func (s *nodeSyncer) reconcile(ctx context.Context, name string) error {
	used, err := s.pods.ByIndex(indexPodNode, name)
	if err != nil {
		return err
	}
	hObj, onHost, _ := s.hostInf.GetStore().GetByKey(name)
	vObj, inVirtual, _ := s.virtInf.GetStore().GetByKey(name)
	nodes := s.sctx.Virtual.CoreV1().Nodes()
	if len(used) == 0 || !onHost {
		if inVirtual && vObj.(*corev1.Node).Labels[labelVirtualNode] == "true" {
			err := nodes.Delete(ctx, name, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		return nil
	}
	h := hObj.(*corev1.Node)
	want := virtualNode(h, s.sctx.Kubelet)
	if !inVirtual {
		created, err := nodes.Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create virtual node %s: %w", name, err)
		}
		created.Status = want.Status
		_, err = nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	}
	v := vObj.(*corev1.Node)
	if v.Labels[labelVirtualNode] != "true" {
		return nil // the tenant's own node object: leave it
	}
	if !apiequality.Semantic.DeepEqual(v.Labels, want.Labels) || !apiequality.Semantic.DeepEqual(v.Spec.Taints, want.Spec.Taints) {
		nv := v.DeepCopy()
		nv.Labels, nv.Spec.Taints = want.Labels, want.Spec.Taints
		if v, err = nodes.Update(ctx, nv, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if !apiequality.Semantic.DeepEqual(v.Status, want.Status) {
		nv := v.DeepCopy()
		nv.Status = want.Status
		_, err := nodes.UpdateStatus(ctx, nv, metav1.UpdateOptions{})
		return err
	}
	return nil
}

// virtualNode is the virtual cluster's view of host node h; with a kubelet
// endpoint, its address and kubelet port are the runtime's kubelet proxy.
func virtualNode(h *corev1.Node, kubelet *KubeletEndpoint) *corev1.Node {
	labels := map[string]string{labelVirtualNode: "true"}
	for k, v := range h.Labels {
		labels[k] = v
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: h.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: h.Spec.Taints, Unschedulable: h.Spec.Unschedulable},
		Status: corev1.NodeStatus{
			Capacity:    h.Status.Capacity,
			Allocatable: h.Status.Allocatable,
			Phase:       h.Status.Phase,
			Conditions:  h.Status.Conditions,
			Addresses:   h.Status.Addresses,
			NodeInfo:    h.Status.NodeInfo,
		},
	}
	if kubelet != nil {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: kubelet.Address}, {Type: corev1.NodeHostName, Address: h.Name}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = kubelet.Port
	}
	return n
}
