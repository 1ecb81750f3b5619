package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/config/crd"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// scriptedRuntime is a Runtime whose Ensure reports what the test says; it
// records the calls. (A runtime of our own, not a stand-in for the
// Kubernetes API: the reconciler talks to a real API server.)
type scriptedRuntime struct {
	state   State
	ensured [][]string
}

func (s *scriptedRuntime) Name() string { return "scripted" }
func (s *scriptedRuntime) Ensure(_ context.Context, _ *storagev1.VirtualCluster, args []string) (State, error) {
	s.ensured = append(s.ensured, args)
	return s.state, nil
}
func (s *scriptedRuntime) Sleep(context.Context, *storagev1.VirtualCluster) (bool, error) {
	return true, nil
}
func (s *scriptedRuntime) Delete(context.Context, *storagev1.VirtualCluster) error { return nil }

// TestReconcileDecisions drives one VirtualCluster through the reconciler's
// decisions against a real API server: bad values, a runtime coming up, a
// ready one, one that refuses its configuration, and a name no runtime
// could use.
func TestReconcileDecisions(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the sublet binary")
	}
	ctx := context.Background()
	cp, err := testenv.StartControlPlane(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	if err := crd.Install(ctx, cp.Config); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := storagev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	host := kubernetes.NewForConfigOrDie(cp.Config)
	recorder := events.NewFakeRecorder(100)
	rt := &scriptedRuntime{}
	r := &reconciler{client: cl, host: host, runtime: rt, recorder: recorder, clock: time.Now, log: klog.Background()}

	ns := "team-a"
	if _, err := host.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apply := func(name, values string) {
		t.Helper()
		vc := &storagev1.VirtualCluster{}
		err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vc)
		vc.Namespace, vc.Name = ns, name
		vc.Spec.HelmRelease = &storagev1.VirtualClusterHelmRelease{Values: values}
		if err != nil {
			err = cl.Create(ctx, vc)
		} else {
			err = cl.Update(ctx, vc)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	reconcile := func(name string) (ctrl.Result, *storagev1.VirtualCluster) {
		t.Helper()
		res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		vc := &storagev1.VirtualCluster{}
		if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vc); err != nil {
			t.Fatal(err)
		}
		return res, vc
	}
	expect := func(vc *storagev1.VirtualCluster, phase storagev1.VirtualClusterPhase, cond string, status metav1.ConditionStatus, reason string) {
		t.Helper()
		if vc.Status.Phase != phase {
			t.Errorf("phase %q (%s), want %q", vc.Status.Phase, vc.Status.Message, phase)
		}
		c := meta.FindStatusCondition(vc.Status.Conditions, cond)
		if c == nil || c.Status != status || c.Reason != reason {
			t.Errorf("condition %s = %+v, want %s with reason %s", cond, c, status, reason)
		}
	}
	event := func(reason string) {
		t.Helper()
		for {
			select {
			case e := <-recorder.Events:
				if strings.Contains(e, " "+reason+" ") {
					return
				}
			default:
				t.Errorf("no %s event", reason)
				return
			}
		}
	}

	// Values with a typo: Failed, naming the path; the runtime is not asked.
	apply("demo", "sync:\n  ingresses:\n    enabeld: true\n")
	_, vc := reconcile("demo")
	expect(vc, storagev1.PhaseFailed, storagev1.ConditionValuesValid, metav1.ConditionFalse, "InvalidValues")
	if !strings.Contains(vc.Status.Message, "enabeld") {
		t.Errorf("message %q does not name the bad key", vc.Status.Message)
	}
	if len(rt.ensured) != 0 {
		t.Errorf("runtime asked to run invalid values: %v", rt.ensured)
	}

	// Fixed values, the runtime still starting: Deploying, looked at again soon.
	apply("demo", "sync:\n  ingresses:\n    enabled: false\n")
	rt.state = State{Message: "starting the virtual cluster's control plane"}
	res, vc := reconcile("demo")
	expect(vc, storagev1.PhaseDeploying, storagev1.ConditionReady, metav1.ConditionFalse, "Deploying")
	if res.RequeueAfter != deployingEvery {
		t.Errorf("requeue after %v while deploying, want %v", res.RequeueAfter, deployingEvery)
	}
	if len(rt.ensured) != 1 || !strings.Contains(strings.Join(rt.ensured[0], " "), "--disable-sync-resources=ingresses") {
		t.Errorf("runtime args %v, want the values' --disable-sync-resources=ingresses", rt.ensured)
	}

	// Ready: the kubeconfig is published in a Secret the VirtualCluster owns.
	rt.state = State{Ready: true, Kubeconfig: []byte("kubeconfig"), Endpoint: "https://127.0.0.1:1", Version: "v1.37.2"}
	res, vc = reconcile("demo")
	expect(vc, storagev1.PhaseReady, storagev1.ConditionReady, metav1.ConditionTrue, "Ready")
	event("Ready")
	if res.RequeueAfter != superviseEvery || vc.Status.KubernetesVersion != "v1.37.2" {
		t.Errorf("requeue after %v, version %q", res.RequeueAfter, vc.Status.KubernetesVersion)
	}
	secret, err := host.CoreV1().Secrets(ns).Get(ctx, vc.Status.KubeconfigSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.UID != vc.UID || string(secret.Data["config"]) != "kubeconfig" {
		t.Errorf("kubeconfig secret %s: controller %v, data %q", secret.Name, ref, secret.Data["config"])
	}

	// The runtime refuses its configuration: Failed with its words, once.
	rt.state = State{Refused: true, Message: "--service-cidr 10.0.0.0/24 does not hold the host's service range"}
	_, vc = reconcile("demo")
	expect(vc, storagev1.PhaseFailed, storagev1.ConditionConfigurationValid, metav1.ConditionFalse, "RefusedByRuntime")
	event("RefusedConfiguration")
	if !strings.Contains(vc.Status.Message, "service range") {
		t.Errorf("message %q lacks the runtime's reason", vc.Status.Message)
	}

	// A name longer than a runtime can use: refused before anything runs.
	long := strings.Repeat("a", 60)
	before := len(rt.ensured)
	apply(long, "")
	_, vc = reconcile(long)
	expect(vc, storagev1.PhaseFailed, storagev1.ConditionConfigurationValid, metav1.ConditionFalse, "InvalidName")
	if len(rt.ensured) != before {
		t.Errorf("runtime asked to run an invalid name")
	}
}
