package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// readmeCommands reads README.md's first command (the first line of the
// first sh block under "The two commands") and the commands of the block
// that follows "In another terminal", each without its comment.
func readmeCommands(t *testing.T, readme string) (first string, tour []string) {
	t.Helper()
	blocks := shBlocks
	_, twoCommands, ok := strings.Cut(readme, "## The two commands")
	if !ok {
		t.Fatal(`README.md has no "## The two commands" section`)
	}
	b := blocks(twoCommands)
	if len(b) == 0 || len(b[0]) < 2 {
		t.Fatal("README.md's two commands are not in an sh block")
	}
	first = b[0][0]
	_, after, ok := strings.Cut(twoCommands, "In another terminal")
	if !ok {
		t.Fatal(`README.md has no "In another terminal" block`)
	}
	if b = blocks(after); len(b) == 0 {
		t.Fatal(`no sh block after "In another terminal"`)
	}
	return first, b[0]
}

// repoMirror makes a directory that looks like a fresh clone of the
// repository (a symlink to each of its top-level entries), without the
// developer's own state (.sublet, bin, .git), so the README's commands run
// as typed, build included, without touching the checkout.
func repoMirror(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mirror := filepath.Join(t.TempDir(), "sublet")
	if err := os.MkdirAll(mirror, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case ".git", ".sublet", "bin":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(mirror, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return mirror
}

// userEnv is the environment of a user with a fresh HOME in dir: no sublet
// login, no kubeconfig. Go's caches stay where they are, so `make` builds
// from the warm cache.
func userEnv(t *testing.T, home string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "KUBECONFIG", "SUBLET_CONFIG", "SUBLET_BIN", "GOFLAGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL":
			continue
		}
		env = append(env, kv)
	}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", k, err)
		}
		env = append(env, k+"="+strings.TrimSpace(string(out)))
	}
	return append(env, "HOME="+home)
}

// TestReadmeAsWritten runs the README's first command exactly as a user
// types it (from the repository root, relative state dir, fresh HOME and
// kubeconfig), then each command of its "In another terminal" block,
// checking that each does what the README says. The commands are read
// from README.md, so the README cannot drift from what is tested.
func TestReadmeAsWritten(t *testing.T) {
	needHost(t) // not used, but an end-to-end test of the same weight
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	first, tour := readmeCommands(t, string(readme))
	if l, err := net.Listen("tcp", "127.0.0.1:9443"); err != nil {
		t.Fatalf("port 9443, which the README's %q uses, is taken (a running 'make demo'?): stop it and run the tests again", first)
	} else {
		l.Close()
	}
	mirror := repoMirror(t)
	home := filepath.Join(t.TempDir(), "home")
	env := userEnv(t, home)

	// The first command, in the foreground of its own terminal.
	start := time.Now()
	up := exec.Command("bash", "-c", first)
	up.Dir, up.Env = mirror, env
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	up.Stdout, up.Stderr = pw, pw
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	isUp := make(chan struct{})
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !once && strings.HasPrefix(sc.Text(), "Sublet is up.") {
				once = true
				close(isUp)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	select {
	case <-isUp:
	case err := <-exited:
		<-lines
		t.Fatalf("%q exited before it was up: %v\n%s", first, err, out.String())
	case <-time.After(5 * time.Minute):
		t.Fatalf("%q not up after 5m:\n%s", first, out.String())
	}
	t.Logf("%q → up: %.1f s", first, time.Since(start).Seconds())

	// In another terminal, from the same directory.
	run := func(cmd string) (string, error) {
		c := exec.Command("bash", "-c", cmd)
		c.Dir, c.Env = mirror, env
		b, err := c.CombinedOutput()
		return string(b), err
	}
	mustRun := func(cmd string) string {
		t.Helper()
		o, err := run(cmd)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, o)
		}
		return o
	}
	eventually := func(cmd, what string, ok func(string) bool) string {
		t.Helper()
		var last string
		err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			o, err := run(cmd)
			last = o
			return err == nil && ok(o), nil
		})
		if err != nil {
			t.Fatalf("%s: never %s; last output:\n%s", cmd, what, last)
		}
		return last
	}
	checks := readmeChecks(t, mustRun, eventually)
	for _, cmd := range tour {
		check, ok := checks[cmd]
		if !ok {
			t.Fatalf("README.md's command %q has no check in TestReadmeAsWritten: add what it is said to do", cmd)
		}
		check(cmd)
	}
	snapshotsAsWritten(t, string(readme), run)

	// Every kubeconfig written holds inline certificates or absolute paths,
	// so any client-go program (not only kubectl) can load it.
	kubeconfigs, _ := filepath.Glob(filepath.Join(mirror, ".sublet", "agent", "vclusters", "*", "*", "host.kubeconfig"))
	if len(kubeconfigs) == 0 {
		t.Error("no virtual cluster's host.kubeconfig under .sublet/agent")
	}
	kubeconfigs = append(kubeconfigs, filepath.Join(mirror, ".sublet", "host", "admin.kubeconfig"), filepath.Join(home, ".kube", "config"))
	for _, kc := range kubeconfigs {
		if err := checkKubeconfigPaths(kc); err != nil {
			t.Error(err)
		}
	}

	// Ctrl-C, as in the terminal: everything stops, virtual clusters too.
	stopped = true
	_ = syscall.Kill(-up.Process.Pid, syscall.SIGINT)
	select {
	case err := <-exited:
		<-lines
		// make, like the shell, ends by the same SIGINT once its child has
		// stopped; sublet itself must stop cleanly.
		var exitErr *exec.ExitError
		interrupted := errors.As(err, &exitErr) && exitErr.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT
		if err != nil && !interrupted {
			t.Errorf("%q after Ctrl-C: %v\n%s", first, err, out.String())
		}
		if !strings.Contains(out.String(), "] stopping") || strings.Contains(out.String(), "error:") {
			t.Errorf("%q did not stop cleanly on Ctrl-C:\n%s", first, out.String())
		}
	case <-time.After(2 * time.Minute):
		_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
		<-exited
		t.Fatalf("%q did not stop within 2m of Ctrl-C:\n%s", first, out.String())
	}
	if n := processesWith(filepath.Join(mirror, ".sublet")); n != 0 {
		t.Errorf("%d processes still run after Ctrl-C", n)
	}
}

// shBlocks are the commands of each sh block of text, comments dropped.
func shBlocks(text string) [][]string {
	var out [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```sh"):
			in, cur = true, nil
		case in && strings.HasPrefix(line, "```"):
			in = false
			out = append(out, cur)
		case in:
			cmd, _, _ := strings.Cut(line, "#")
			if cmd = strings.TrimSpace(cmd); cmd != "" {
				cur = append(cur, cmd)
			}
		}
	}
	return out
}

// snapshotsAsWritten runs the README's snapshot block in one shell (so
// $snap carries over), with sublet on PATH as installed, against the demo
// cluster the tour left: the snapshot's name is its last line, restore and
// the two forks succeed, the forks hold the demo's deployment, and the
// list shows the snapshot. The move names a cluster this demo has not
// connected, and must say so.
func snapshotsAsWritten(t *testing.T, readme string, run func(cmd string) (string, error)) {
	t.Helper()
	_, section, ok := strings.Cut(readme, "### Snapshots, restore, fork and move")
	if !ok {
		t.Fatal(`README.md has no "### Snapshots, restore, fork and move" section`)
	}
	b := shBlocks(section)
	if len(b) == 0 {
		t.Fatal("README.md's snapshot section has no sh block")
	}
	script, move := []string{"set -e", `export PATH="$PWD/bin:$PATH"`}, ""
	for _, cmd := range b[0] {
		if strings.HasPrefix(cmd, "sublet move ") {
			move = cmd
			continue
		}
		script = append(script, cmd)
	}
	script = append(script, `echo "snapshot=$snap"`)
	out, err := run(strings.Join(script, "\n"))
	snap := regexp.MustCompile(`(?m)^snapshot=(demo-\d{8}-\d{6})$`).FindStringSubmatch(out)
	if err != nil || snap == nil || !strings.Contains(out, "restored") || strings.Count(out, "is ready") < 2 || !strings.Contains(out, snap[1]) {
		t.Fatalf("the README's snapshot block: %v\n%s", err, out)
	}
	for _, ctx := range []string{"sublet_local_vcluster-debug_debug", "sublet_local_vcluster-ci-2_ci-2"} {
		if o, err := run("kubectl --context " + ctx + " get deployment web"); err != nil {
			t.Errorf("the fork of context %s lacks the demo's deployment: %v\n%s", ctx, err, o)
		}
	}
	if move == "" {
		t.Fatal("the README's snapshot block has no move")
	}
	if o, err := run(`export PATH="$PWD/bin:$PATH"; ` + move); err == nil || !strings.Contains(o, `cluster "eu-2" is not connected`) {
		t.Errorf("%s on a demo with one cluster: %v\n%s", move, err, o)
	}
}

// checkKubeconfigPaths fails if a kubeconfig names a file by a relative
// path, which only kubectl resolves (against the kubeconfig's folder).
func checkKubeconfigPaths(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, key := range []string{"certificate-authority", "client-certificate", "client-key", "tokenFile"} {
		re := regexp.MustCompile(`(?m)^\s*` + key + `:\s*(\S+)`)
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			if !filepath.IsAbs(m[1]) {
				return fmt.Errorf("%s: %s %q is relative", path, key, m[1])
			}
		}
	}
	return nil
}

// readmeChecks is what each command of the README's "In another terminal"
// block is said to do, checked with mustRun and eventually (which run a
// command as TestReadmeAsWritten's user would). A command the README gains
// needs a check here, or the test fails.
func readmeChecks(t *testing.T, mustRun func(cmd string) string, eventually func(cmd, what string, ok func(string) bool) string) map[string]func(cmd string) {
	currentContext := func() string { return strings.TrimSpace(mustRun("kubectl config current-context")) }
	podLine := regexp.MustCompile(`(?m)^web-\S+\s+1/1\s+Running\s+\d+\s+\S+\s+(\d+\.\d+\.\d+\.\d+)\s+(\S+)`)

	return map[string]func(cmd string){
		"kubectl get namespaces": func(cmd string) {
			eventually(cmd, "lists the demo cluster's namespaces", func(o string) bool {
				return strings.Contains(o, "kube-system") && strings.Contains(o, "default")
			})
			if ctx := currentContext(); ctx != "sublet_local_vcluster-demo_demo" {
				t.Errorf("kubectl's context is %q, not the demo virtual cluster", ctx)
			}
		},
		"kubectl create deployment web --image=nginx --replicas=3": func(cmd string) {
			if o := mustRun(cmd); !strings.Contains(o, "deployment.apps/web created") {
				t.Errorf("%s:\n%s", cmd, o)
			}
		},
		"kubectl get pods -o wide": func(cmd string) {
			o := eventually(cmd, "shows 3 Running web pods with pod IPs and nodes", func(o string) bool {
				return len(podLine.FindAllString(o, -1)) == 3
			})
			for _, m := range podLine.FindAllStringSubmatch(o, -1) {
				if m[2] == "<none>" {
					t.Errorf("pod without a node:\n%s", o)
				}
			}
		},
		"bin/sublet create vcluster team-a": func(cmd string) {
			if o := mustRun(cmd); !strings.Contains(o, "is ready") {
				t.Errorf("%s:\n%s", cmd, o)
			}
			if ctx := currentContext(); ctx != "sublet_local_vcluster-team-a_team-a" {
				t.Errorf("after %s, kubectl's context is %q", cmd, ctx)
			}
			if o := mustRun("kubectl get namespaces"); !strings.Contains(o, "kube-system") {
				t.Errorf("kubectl in team-a:\n%s", o)
			}
		},
		"bin/sublet use vcluster": func(cmd string) {
			o := mustRun(cmd)
			for _, name := range []string{"demo", "team-a"} {
				if !regexp.MustCompile(`(?m)^` + name + `\s+vcluster-` + name + `\s+local\s+Ready`).MatchString(o) {
					t.Errorf("%s does not list %s as Ready:\n%s", cmd, name, o)
				}
			}
		},
		"bin/sublet use vcluster demo": func(cmd string) {
			mustRun(cmd)
			if ctx := currentContext(); ctx != "sublet_local_vcluster-demo_demo" {
				t.Errorf("after %s, kubectl's context is %q", cmd, ctx)
			}
			if o := mustRun("kubectl get deployments"); !strings.Contains(o, "web") {
				t.Errorf("back in demo, its deployment is missing:\n%s", o)
			}
		},
		"bin/sublet delete vcluster team-a": func(cmd string) {
			mustRun(cmd)
			if o := mustRun("kubectl config get-contexts -o name"); strings.Contains(o, "team-a") {
				t.Errorf("kube-context of the deleted virtual cluster left:\n%s", o)
			}
			host := "KUBECONFIG=.sublet/host/admin.kubeconfig kubectl "
			if o := mustRun(host + "get virtualclusters,pods,secrets -n vcluster-team-a -o name"); strings.Contains(o, "team-a") {
				t.Errorf("host objects of the deleted virtual cluster left:\n%s", o)
			}
		},
		"KUBECONFIG=.sublet/host/admin.kubeconfig kubectl get pods -A": func(cmd string) {
			o := mustRun(cmd)
			if n := len(regexp.MustCompile(`(?m)^vcluster-demo\s+web-\S+-x-default-x-demo\s`).FindAllString(o, -1)); n != 3 {
				t.Errorf("%s: %d host pods named web-…-x-default-x-demo in vcluster-demo, want 3:\n%s", cmd, n, o)
			}
		},
	}
}
