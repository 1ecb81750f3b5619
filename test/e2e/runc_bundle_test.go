package e2e

// The OCI bundle and runc side of TestImageUnderRunc: the runc command,
// the image built and unpacked, and the runtime spec made from the chart's
// pod.

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sublet-dev/sublet/charts"
	"github.com/sublet-dev/sublet/internal/image"
	"github.com/sublet-dev/sublet/internal/testenv"
)

// runcCLI is runc with a state directory of the test's own.
type runcCLI struct {
	path, root string
}

// needRunc skips the test, saying why, where runc is not installed or
// cannot start even a trivial container (the binary printing its version
// in an otherwise empty root file system).
func needRunc(t *testing.T, bin string) runcCLI {
	t.Helper()
	path, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed (apt-get install runc; .ci/run installs it): the image is not run under a container runtime")
	}
	r := runcCLI{path: path, root: t.TempDir()}
	bundle := t.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(bundle, "config.json"), &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{Args: []string{"/sublet", "version"}, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/sublet", Type: "bind", Source: bin, Options: []string{"rbind", "ro"}},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := "sublet-e2e-probe-" + strconv.Itoa(os.Getpid())
	out, err := exec.CommandContext(ctx, path, "--root", r.root, "run", "--bundle", bundle, id).CombinedOutput()
	_ = exec.Command(path, "--root", r.root, "delete", "--force", id).Run()
	if err != nil {
		t.Skipf("runc (%s) cannot start a trivial container on this machine, so the image is not run under it: %v\n%s", path, err, out)
	}
	return r
}

// container is a container run by runc in the foreground.
type container struct {
	runc    runcCLI
	id      string
	started time.Time
	cmd     *exec.Cmd
	log     string
	exited  chan struct{}
	err     error
}

func (c *container) output() string {
	out, _ := os.ReadFile(c.log)
	return string(out)
}

// start runs the bundle's container; cleanup deletes it, running or not.
func (r runcCLI) start(t *testing.T, id, bundle string) *container {
	t.Helper()
	c := &container{runc: r, id: id, log: filepath.Join(bundle, "container.log"), exited: make(chan struct{})}
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cmd = exec.Command(r.path, "--root", r.root, "run", "--bundle", bundle, id)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		if out, err := exec.Command(r.path, "--root", r.root, "delete", "--force", id).CombinedOutput(); err != nil && !strings.Contains(string(out), "does not exist") {
			t.Errorf("runc delete --force %s: %v\n%s", id, err, out)
		}
		<-c.exited
		if t.Failed() {
			t.Logf("container %s output:\n%s", id, testenv.Tail(c.output(), 40))
		}
	})
	return c
}

// stop sends SIGTERM as the kubelet would and returns how long the process
// took to exit; it fails the test past grace or on a non-zero exit.
func (c *container) stop(t *testing.T, grace time.Duration) time.Duration {
	t.Helper()
	cmd := exec.Command(c.runc.path, "--root", c.runc.root, "kill", c.id, "TERM")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc kill %s TERM: %v\n%s", c.id, err, out)
	}
	select {
	case <-c.exited:
	case <-time.After(grace):
		t.Fatalf("the container still runs %s after SIGTERM, the chart's terminationGracePeriodSeconds", grace)
	}
	took := time.Since(start)
	if c.err != nil {
		t.Errorf("the container exited with %v after SIGTERM, want 0", c.err)
	}
	return took
}

// buildImage writes the image archive `make image` writes and reads the
// image back from it, as `docker load` would.
func buildImage(t *testing.T, bin, archive string) (v1.Image, int64) {
	t.Helper()
	c, err := charts.VCluster()
	if err != nil {
		t.Fatal(err)
	}
	version := c.Metadata.AppVersion
	built, err := image.Build(image.Options{Binary: bin, CACerts: "/etc/ssl/certs/ca-certificates.crt", Version: version})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag("ghcr.io/sublet-dev/sublet:" + version)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteArchive(f, built, ref, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &ref)
	if err != nil {
		t.Fatalf("read the image archive back: %v", err)
	}
	return img, fi.Size()
}

// imageRootFS builds the image of bin as `make image` does and unpacks its
// root file system, which every container of the test may share
// read-only; it returns the root and the image's config file.
func imageRootFS(t *testing.T, bin string) (string, *v1.ConfigFile) {
	t.Helper()
	dir := t.TempDir()
	img, _ := buildImage(t, bin, filepath.Join(dir, "sublet-image.tar"))
	rootfs := filepath.Join(dir, "rootfs")
	unpackRootFS(t, img, rootfs)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return rootfs, cf
}

// unpackRootFS writes the image's flattened file system to dir with its
// modes and owners.
func unpackRootFS(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("unpack the image: %v", err)
		}
		path := filepath.Join(dir, filepath.Clean("/"+h.Name))
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFile(path, tr)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, path)
		default:
			t.Fatalf("unpack the image: %s has tar type %c, which this test does not unpack", h.Name, h.Typeflag)
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			err = os.Chmod(path, mode&(os.ModePerm|os.ModeSticky|os.ModeSetuid|os.ModeSetgid))
		}
		if err == nil {
			err = os.Lchown(path, h.Uid, h.Gid)
		}
		if err != nil {
			t.Fatalf("unpack the image: %v", err)
		}
	}
}

func writeFile(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeJSON(t *testing.T, path string, v interface{}) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p chartPod) container() corev1.Container { return p.template.Spec.Containers[0] }

// ociSpec is what the kubelet and a CRI runtime would make of the pod with
// image config cfg and root file system rootfs: its process, its mounts, a
// read-only root if the chart asks for one, the memory limit, the runtime's
// default seccomp profile if the chart asks for it, new pid, ipc, uts and
// mount namespaces and the host's network namespace. dir holds the files
// the kubelet would write; data is the claim templates' volume.
func (p chartPod) ociSpec(t *testing.T, cfg v1.Config, rootfs, dir, data string) *specs.Spec {
	t.Helper()
	ctr := p.container()
	proc := p.process(t, cfg)
	resources := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if mem, ok := ctr.Resources.Limits[corev1.ResourceMemory]; ok {
		resources.Memory = &specs.LinuxMemory{Limit: ptr.To(mem.Value())}
	}
	sc := ctr.SecurityContext
	spec := &specs.Spec{
		Version:  "1.0.2",
		Process:  proc,
		Root:     &specs.Root{Path: rootfs, Readonly: sc != nil && ptr.Deref(sc.ReadOnlyRootFilesystem, false)},
		Hostname: p.name,
		Mounts:   p.mounts(t, dir, data, proc.User),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}},
			Resources:  resources,
			// runc's and containerd's defaults.
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
				"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if p.seccompProfile(t) == corev1.SeccompProfileTypeRuntimeDefault {
		// The default profile of Docker, from which containerd's and
		// CRI-O's RuntimeDefault derive; it depends on the process's
		// capabilities, so it is made last.
		profile, err := seccomp.GetDefaultProfile(spec)
		if err != nil {
			t.Fatalf("the runtime's default seccomp profile: %v", err)
		}
		spec.Linux.Seccomp = profile
	}
	return spec
}

// seccompProfile is the container's seccomp profile type, as the
// container's or else the pod's security context sets it; the test mirrors
// RuntimeDefault only.
func (p chartPod) seccompProfile(t *testing.T) corev1.SeccompProfileType {
	t.Helper()
	var profile *corev1.SeccompProfile
	if psc := p.spec().SecurityContext; psc != nil {
		profile = psc.SeccompProfile
	}
	if sc := p.container().SecurityContext; sc != nil && sc.SeccompProfile != nil {
		profile = sc.SeccompProfile
	}
	if profile == nil {
		return ""
	}
	if profile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("%s: seccomp profile %s is not mirrored by this test (RuntimeDefault is)", p.from, profile.Type)
	}
	return profile.Type
}

// process is the container's process: the image's entrypoint and the
// chart's args (with $(VAR) expanded), the image's env overridden by the
// chart's and the in-cluster variables pointing at the local host, the
// pod's user, groups and fsGroup, and the container's security context.
func (p chartPod) process(t *testing.T, cfg v1.Config) *specs.Process {
	t.Helper()
	pod, ctr := p.spec(), p.container()
	u, err := url.Parse(host.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctrEnv := p.env(t)
	var env []string
	for _, kv := range cfg.Env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(ctrEnv, func(e [2]string) bool { return e[0] == name }) {
			env = append(env, kv)
		}
	}
	for _, e := range append(ctrEnv, [2]string{"HOSTNAME", p.name},
		[2]string{"KUBERNETES_SERVICE_HOST", u.Hostname()}, [2]string{"KUBERNETES_SERVICE_PORT", u.Port()}) {
		env = append(env, e[0]+"="+e[1])
	}

	argv := append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	if len(ctr.Command) > 0 {
		argv = append(slices.Clone(ctr.Command), ctr.Args...)
	} else if len(ctr.Args) > 0 {
		argv = append(slices.Clone(cfg.Entrypoint), ctr.Args...)
	}
	expand := expander(ctrEnv)
	for i := range argv {
		argv[i] = expand.Replace(argv[i])
	}

	user := imageUser(t, cfg.User)
	sc := ptr.Deref(ctr.SecurityContext, corev1.SecurityContext{})
	if psc := pod.SecurityContext; psc != nil {
		user.UID = uint32(ptr.Deref(psc.RunAsUser, int64(user.UID)))
		user.GID = uint32(ptr.Deref(psc.RunAsGroup, int64(user.GID)))
		if psc.FSGroup != nil {
			user.AdditionalGids = []uint32{uint32(*psc.FSGroup)}
		}
	}
	user.UID = uint32(ptr.Deref(sc.RunAsUser, int64(user.UID)))
	user.GID = uint32(ptr.Deref(sc.RunAsGroup, int64(user.GID)))
	// Mirrored only as the chart must set it: no capabilities at all.
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Fatal(p.from + ": the container does not drop ALL capabilities (and add none)")
	}
	cwd := cmp.Or(ctr.WorkingDir, cfg.WorkingDir, "/")
	return &specs.Process{
		User: user, Args: argv, Env: env, Cwd: cwd,
		Capabilities:    &specs.LinuxCapabilities{},
		NoNewPrivileges: sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
	}
}

// mounts are the runtime's usual file systems, the chart's volumes, the
// service account's token, CA and namespace at the in-cluster path, and the
// /etc/hosts, /etc/hostname and /etc/resolv.conf the kubelet gives every
// container.
func (p chartPod) mounts(t *testing.T, dir, data string, user specs.User) []specs.Mount {
	t.Helper()
	pod := p.spec()
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	mounts = append(mounts, p.volumeMounts(t, dir, data, user.UID, user.GID)...)
	if ptr.Deref(pod.AutomountServiceAccountToken, true) {
		mounts = append(mounts, bindDir(t, filepath.Join(dir, "serviceaccount"), "/var/run/secrets/kubernetes.io/serviceaccount", true, map[string]string{
			"token":     mintToken(t, p.ns, pod.ServiceAccountName),
			"ca.crt":    string(hostCA(t)),
			"namespace": p.ns,
		}))
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	self := p.name
	if p.subdomain != "" {
		self = fmt.Sprintf("%s.%s.%s.svc.cluster.local\t%s", p.name, p.subdomain, p.ns, p.name)
	}
	etc := bindDir(t, filepath.Join(dir, "etc"), "", false, map[string]string{
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", p.ip, self),
		"hostname":    p.name + "\n",
		"resolv.conf": string(resolv),
	})
	for _, file := range []string{"hosts", "hostname", "resolv.conf"} {
		mounts = append(mounts, specs.Mount{Destination: "/etc/" + file, Type: "bind", Source: filepath.Join(etc.Source, file), Options: etc.Options})
	}
	return mounts
}

// env is the container's env resolved as the kubelet does, in order; the
// downward API fields the pod would have are the only references.
func (p chartPod) env(t *testing.T) [][2]string {
	t.Helper()
	var out [][2]string
	for _, e := range p.container().Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				t.Fatalf("env %s: only fieldRef references are mirrored by this test", e.Name)
			}
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				v = p.ip
			case "metadata.name":
				v = p.name
			case "metadata.namespace":
				v = p.ns
			default:
				t.Fatalf("env %s: field %s is not mirrored by this test", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		out = append(out, [2]string{e.Name, expander(out).Replace(v)})
	}
	return out
}

// expander replaces $(NAME) by the value of NAME in env, as the kubelet
// expands args.
func expander(env [][2]string) *strings.Replacer {
	var pairs []string
	for _, e := range env {
		pairs = append(pairs, "$("+e[0]+")", e[1])
	}
	return strings.NewReplacer(pairs...)
}

// imageUser parses the image config's UID:GID.
func imageUser(t *testing.T, s string) specs.User {
	t.Helper()
	uid, gid, _ := strings.Cut(s, ":")
	u, err1 := strconv.ParseUint(uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("image user %q is not UID:GID", s)
	}
	return specs.User{UID: uint32(u), GID: uint32(g)}
}

// volumeMounts are the container's volume mounts, in order: the
// StatefulSet's claim template as directory data owned by the pod's user
// (as fsGroup makes a fresh volume writable), an emptyDir as a directory
// under dir (tmpfs for medium Memory), a Secret as the kubelet writes it
// (under dir) with its subPath; other kinds fail the test.
func (p chartPod) volumeMounts(t *testing.T, dir, data string, uid, gid uint32) []specs.Mount {
	t.Helper()
	var out []specs.Mount
	for _, vm := range p.container().VolumeMounts {
		opts := []string{"nosuid", "nodev"}
		if vm.ReadOnly {
			opts = append(opts, "ro")
		}
		claim := slices.ContainsFunc(p.claims, func(c corev1.PersistentVolumeClaim) bool { return c.Name == vm.Name })
		vols := p.spec().Volumes
		i := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if vm.SubPath != "" && (i < 0 || vols[i].Secret == nil) {
			t.Fatalf("volume %s at %s: a subPath is mirrored by this test for Secrets only", vm.Name, vm.MountPath)
		}
		switch {
		case i >= 0 && vols[i].Secret != nil:
			src := filepath.Join(p.secretVolume(t, dir, vols[i]), filepath.Clean("/"+vm.SubPath))
			out = append(out, specs.Mount{Destination: vm.MountPath, Type: "bind", Source: src, Options: append(opts, "rbind", "ro")})
		case claim:
			// A claim's volume outlives its pod: a later pod gets it back.
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(data, int(uid), int(gid)); err != nil {
				t.Fatal(err)
			}
			out = append(out, specs.Mount{Destination: vm.MountPath, Type: "bind", Source: data, Options: append(opts, "rbind")})
		case i >= 0 && vols[i].EmptyDir != nil && vols[i].EmptyDir.Medium == corev1.StorageMediumMemory:
			out = append(out, specs.Mount{Destination: vm.MountPath, Type: "tmpfs", Source: "tmpfs", Options: append(opts, "mode=0777")})
		case i >= 0 && vols[i].EmptyDir != nil:
			out = append(out, specs.Mount{Destination: vm.MountPath, Type: "bind", Source: p.emptyDir(t, dir, vm.Name), Options: append(opts, "rbind")})
		default:
			t.Fatalf("volume %s at %s: only claim templates, emptyDirs and Secrets are mirrored by this test", vm.Name, vm.MountPath)
		}
	}
	return out
}

// emptyDir makes emptyDir volume name (once) under dir as the kubelet does
// on the node's disk: a directory anyone may write, and with the pod's
// fsGroup, of that group and set-group-ID.
func (p chartPod) emptyDir(t *testing.T, dir, name string) string {
	t.Helper()
	vdir := filepath.Join(dir, "volumes", name)
	if _, err := os.Stat(vdir); err == nil {
		return vdir
	}
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	mode := os.ModePerm
	if psc := p.spec().SecurityContext; psc != nil && psc.FSGroup != nil {
		mode |= os.ModeSetgid
		if err := os.Chown(vdir, 0, int(*psc.FSGroup)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(vdir, mode); err != nil {
		t.Fatal(err)
	}
	return vdir
}

// secretVolume writes Secret volume v of the pod (once) under dir as the
// kubelet does, and returns its directory: each key (or each item) a file of
// the volume's mode, and with the pod's fsGroup, owned by root and that
// group and readable by it.
func (p chartPod) secretVolume(t *testing.T, dir string, v corev1.Volume) string {
	t.Helper()
	vdir := filepath.Join(dir, "volumes", v.Name)
	if _, err := os.Stat(vdir); err == nil {
		return vdir
	}
	src := v.Secret
	secret, err := host.Client.CoreV1().Secrets(p.ns).Get(context.Background(), src.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("volume %s: %v", v.Name, err)
	}
	items := src.Items
	if len(items) == 0 {
		for k := range secret.Data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	var fsGroup *int64
	if psc := p.spec().SecurityContext; psc != nil {
		fsGroup = psc.FSGroup
	}
	for _, it := range items {
		data, ok := secret.Data[it.Key]
		if !ok {
			t.Fatalf("volume %s: Secret %s has no key %s", v.Name, src.SecretName, it.Key)
		}
		mode := os.FileMode(ptr.Deref(it.Mode, ptr.Deref(src.DefaultMode, corev1.SecretVolumeSourceDefaultMode)))
		path := filepath.Join(vdir, filepath.Clean("/"+it.Path))
		if err := writeFile(path, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if fsGroup != nil {
			// The kubelet's volume ownership for a read-only volume.
			mode |= 0o440
			if err := os.Chown(path, 0, int(*fsGroup)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(path, mode&os.ModePerm); err != nil {
			t.Fatal(err)
		}
	}
	return vdir
}

// bindDir writes files into dir and returns a bind mount of it at dest.
func bindDir(t *testing.T, dir, dest string, readOnly bool, files map[string]string) specs.Mount {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := []string{"rbind", "nosuid", "nodev"}
	if readOnly {
		opts = append(opts, "ro")
	}
	return specs.Mount{Destination: dest, Type: "bind", Source: dir, Options: opts}
}
