package hostcluster

import (
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/util/flushwriter"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	k8scorev1 "k8s.io/kubernetes/pkg/apis/core/v1"
	"sigs.k8s.io/kwok/pkg/kwok/server"
)

// streamIdleTimeout closes an exec, attach or port-forward stream that has
// carried nothing for this long, as a kubelet's streaming idle timeout does.
const streamIdleTimeout = time.Hour

// kubeletAPI is the kubelet API of the simulated nodes: the paths the host
// API server calls for logs, exec, attach and port-forward, answered by
// KWOK's simulated runtime, plus /healthz. It is served here rather than by
// KWOK's own server because that one also answers plain HTTP and takes any
// client; this handler sits behind the host's pinned TLS (see start).
func kubeletAPI(rt *server.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	// exec and attach share their stream options.
	streams := func(serve func(http.ResponseWriter, *http.Request, *remotecommand.Options)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			opts, err := remotecommand.NewOptions(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			serve(w, r, opts)
		}
	}
	exec := streams(func(w http.ResponseWriter, r *http.Request, opts *remotecommand.Options) {
		remotecommand.ServeExec(w, r, rt, kwokPodName(r), r.PathValue("uid"), r.PathValue("container"),
			r.URL.Query()["command"], opts, streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout,
			remotecommand.SupportedStreamingProtocols)
	})
	attach := streams(func(w http.ResponseWriter, r *http.Request, opts *remotecommand.Options) {
		remotecommand.ServeAttach(w, r, rt, kwokPodName(r), r.PathValue("uid"), r.PathValue("container"),
			opts, streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout,
			remotecommand.SupportedStreamingProtocols)
	})
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, exec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, attach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			opts, err := portforward.NewV4Options(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			portforward.ServePortForward(w, r, rt, kwokPodName(r), r.PathValue("uid"), opts,
				streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, portforward.SupportedProtocols)
		})
	}
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		query := r.URL.Query()
		var opts corev1.PodLogOptions
		if err := k8scorev1.Convert_url_Values_To_v1_PodLogOptions(&query, &opts, nil); err != nil {
			http.Error(w, "decode log options: "+err.Error(), http.StatusBadRequest)
			return
		}
		fw := flushwriter.Wrap(w)
		if err := rt.GetContainerLogs(r.Context(), r.PathValue("pod"), r.PathValue("ns"), r.PathValue("container"), &opts, fw, fw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	return mux
}

// kwokPodName is the pod name KWOK's runtime methods take: "NAME/NAMESPACE".
func kwokPodName(r *http.Request) string {
	return r.PathValue("pod") + "/" + r.PathValue("ns")
}
