package hostcluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/kwok/kustomize/stage/node/fast"
	heartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	"sigs.k8s.io/kwok/pkg/kwok/server"
	kwoklog "sigs.k8s.io/kwok/pkg/log"

	"github.com/sublet-dev/sublet/internal/pki"
)

const (
	// kwokID holds the node leases; it is stable so a restarted host takes
	// its nodes back at once instead of waiting for the old leases to expire.
	kwokID = "sublet-host"
	// nodeLeaseSeconds is the node lease duration KWOK renews.
	nodeLeaseSeconds = 40
	// nobody is the user simulated exec runs as when sublet runs as root.
	nobody = 65534
)

// loadStages parses KWOK's standard stages: nodes become Ready and keep their
// leases; pods become Running, Job pods complete, deleted pods go away.
func loadStages() (map[internalversion.StageResourceRef][]*internalversion.Stage, error) {
	out := map[internalversion.StageResourceRef][]*internalversion.Stage{}
	for _, raw := range []string{fast.DefaultNodeInit, heartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete} {
		s, err := config.UnmarshalWithType[*internalversion.Stage](raw)
		if err != nil {
			return nil, fmt.Errorf("parse kwok stage: %w", err)
		}
		out[s.Spec.ResourceRef] = append(out[s.Spec.ResourceRef], s)
	}
	return out, nil
}

// simulator is KWOK's node and pod simulation plus its fake kubelet.
type simulator struct {
	admin   *rest.Config
	workDir string
	podCIDR string
	exec    bool
	logOut  io.Writer
	// pki holds the host control plane's certificates: the kubelet endpoint
	// serves with its serving certificate to its kubelet client alone.
	pki pki.Dir
}

// start runs the simulation until ctx ends and returns the kubelet port.
// kubeletServer is the kubelet API of the simulated nodes: logs, and exec
// where the simulator runs commands.
func (s *simulator) kubeletServer(ctr *controllers.Controller) (*server.Server, error) {
	srvCfg := server.Config{DataSource: ctr, NodeCacheGetter: ctr.GetNodeCache(), PodCacheGetter: ctr.GetPodCache()}
	logs, err := s.clusterLogs()
	if err != nil {
		return nil, err
	}
	srvCfg.ClusterLogs = logs
	if s.exec {
		execs, err := s.clusterExecs()
		if err != nil {
			return nil, err
		}
		srvCfg.ClusterExecs = execs
	}
	return server.NewServer(srvCfg)
}

func (s *simulator) start(ctx context.Context) (int, error) {
	ctx = kwoklog.NewContext(ctx, kwoklog.NewLogger(s.logOut, slog.LevelWarn))
	cfg := rest.CopyConfig(s.admin)
	cfg.QPS, cfg.Burst = 500, 1000
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	stages, err := loadStages()
	if err != nil {
		return 0, err
	}
	// Bound before the nodes are written, so the port they advertise is
	// ours; closed when ctx ends.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("kubelet endpoint: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	serving := false
	defer func() {
		if !serving {
			_ = l.Close()
		}
	}()
	ctr, err := controllers.NewController(controllers.Config{
		Clock:                             clock.RealClock{},
		TypedClient:                       typed,
		DynamicClient:                     dyn,
		RESTClient:                        typed.Discovery().RESTClient(),
		ManageNodesWithAnnotationSelector: kwokNodeSelector,
		CIDR:                              s.podCIDR,
		NodeIP:                            "127.0.0.1",
		NodeName:                          "localhost",
		NodePort:                          port,
		LocalStages:                       stages,
		PodPlayStageParallelism:           4,
		NodePlayStageParallelism:          4,
		NodeLeaseDurationSeconds:          nodeLeaseSeconds,
		NodeLeaseParallelism:              4,
		PodsOnNodeSyncParallelism:         1,
		EnablePodsOnNodeSyncListPager:     true,
		ID:                                kwokID,
	})
	if err != nil {
		return 0, fmt.Errorf("kwok controller: %w", err)
	}
	if err := ctr.Start(ctx); err != nil {
		return 0, fmt.Errorf("start kwok controller: %w", err)
	}

	srv, err := s.kubeletServer(ctr)
	if err != nil {
		return 0, fmt.Errorf("kwok kubelet server: %w", err)
	}
	// The host API server's kubelet-client certificate is the only client:
	// anything else, a certificate the host CA signed for someone else or
	// plain HTTP, is refused in the handshake.
	err = s.pki.ServePinned(ctx, l, pki.APIServerKubeletClient, kubeletAPI(srv), func(err error) {
		fmt.Fprintf(s.logOut, "kubelet endpoint on %s stopped: %v\n", l.Addr(), err)
	})
	if err != nil {
		return 0, fmt.Errorf("kubelet endpoint: %w", err)
	}
	serving = true
	return port, nil
}

// simulatedLog is what kubectl logs shows for every simulated container.
const simulatedLog = "sublet: simulated container started on a KWOK node\nsublet: no real process runs here; kubectl exec runs nothing unless the host runs with --simulate-exec\n"

func (s *simulator) clusterLogs() ([]*internalversion.ClusterLogs, error) {
	dir := filepath.Join(s.workDir, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "container.log")
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(simulatedLog), "\n") {
		fmt.Fprintf(&b, "%s stdout F %s\n", ts, line)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return []*internalversion.ClusterLogs{{
		Spec: internalversion.ClusterLogsSpec{Logs: []internalversion.Log{{LogsFile: file, Follow: true}}},
	}}, nil
}

func (s *simulator) clusterExecs() ([]*internalversion.ClusterExec, error) {
	// The system's scratch dir: an unprivileged user can enter it, unlike
	// the data dir, which holds the cluster's keys.
	local := &internalversion.ExecTargetLocal{WorkDir: os.TempDir()}
	if os.Geteuid() == 0 {
		uid, gid := int64(nobody), int64(nobody)
		local.SecurityContext = &internalversion.SecurityContext{RunAsUser: &uid, RunAsGroup: &gid}
	}
	return []*internalversion.ClusterExec{{
		Spec: internalversion.ClusterExecSpec{Execs: []internalversion.ExecTarget{{Local: local}}},
	}}, nil
}
