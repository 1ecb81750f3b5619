package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sublet-dev/sublet/internal/kubeproxy"
	"github.com/sublet-dev/sublet/internal/syncer"
)

// Kubelet serves the kubelet API the virtual API server calls for
// `kubectl logs`, `exec`, `attach` and `port-forward`, by asking the host
// API server for the same on the host pod: the names are translated and
// only this virtual cluster's pods are reachable.
type Kubelet struct {
	c    *syncer.Context
	host *kubeproxy.Backend
}

// NewKubelet serves through host, the host API server with the
// syncer's credentials.
func NewKubelet(c *syncer.Context, host *kubeproxy.Backend) *Kubelet {
	return &Kubelet{c: c, host: host}
}

// kubelet stream parameters → the API server's pod subresource ones.
var streamParams = map[string]string{"input": "stdin", "output": "stdout", "error": "stderr", "tty": "tty", "command": "command"}

func (k *Kubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) == 1 && parts[0] == "healthz" {
		_, _ = w.Write([]byte("ok"))
		return
	}
	if len(parts) < 3 {
		http.NotFound(w, r)
		return
	}
	op, ns, pod := parts[0], parts[1], parts[2]
	container := ""
	if len(parts) > 3 {
		container = parts[3]
	}
	hostPod := k.c.Translator.HostName(ns, pod)
	// Only a pod this virtual cluster owns on the host.
	h, err := k.c.Host.CoreV1().Pods(k.c.Translator.HostNamespace).Get(r.Context(), hostPod, metav1.GetOptions{})
	if err != nil || !k.c.Translator.Owns(h) {
		kubeproxy.WriteStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "pod "+ns+"/"+pod+" has no host pod")
		return
	}
	base := "/api/v1/namespaces/" + k.c.Translator.HostNamespace + "/pods/" + hostPod + "/"
	switch op {
	case "containerLogs":
		k.logs(w, r, hostPod, container)
	case "exec", "attach":
		q := url.Values{"container": {container}}
		for key, vals := range r.URL.Query() {
			if name, ok := streamParams[key]; ok {
				for _, v := range vals {
					if name != "command" {
						v = "true"
					}
					q.Add(name, v)
				}
			}
		}
		k.host.Serve(w, r, base+op, q, nil)
	case "portForward":
		k.host.Serve(w, r, base+"portforward", r.URL.Query(), nil)
	default:
		http.NotFound(w, r)
	}
}

// logs streams a host pod's container log.
func (k *Kubelet) logs(w http.ResponseWriter, r *http.Request, hostPod, container string) {
	q := r.URL.Query()
	opts := &corev1.PodLogOptions{Container: container, Follow: q.Get("follow") == "true", Previous: q.Get("previous") == "true",
		Timestamps: q.Get("timestamps") == "true"}
	for name, dst := range map[string]**int64{"tailLines": &opts.TailLines, "limitBytes": &opts.LimitBytes, "sinceSeconds": &opts.SinceSeconds} {
		if v := q.Get(name); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				*dst = &n
			}
		}
	}
	stream, err := k.c.Host.CoreV1().Pods(k.c.Translator.HostNamespace).GetLogs(hostPod, opts).Stream(r.Context())
	if err != nil {
		kubeproxy.WriteStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "host logs: "+err.Error())
		return
	}
	defer stream.Close()
	w.Header().Set("Content-Type", "text/plain")
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32*1024)
	for {
		n, err := stream.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF || err != nil {
			return
		}
	}
}
