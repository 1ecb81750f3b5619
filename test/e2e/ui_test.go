package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// browser is a headless Chromium tab that saves a screenshot of each page
// it is asked to.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
	n    int
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed for the web UI test (.ci/run installs it: apt-get install chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 800))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	// The first call starts the browser, on a context without a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Kept after the test for a person to look at; ignored by git.
	dir := filepath.Join(root, "test", "e2e", "_output", t.Name())
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, base: base, dir: dir}
}

// run runs actions with a time limit, failing the test on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a full-page screenshot named after what it shows.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// get runs an action that returns a string, failing the test on error.
func (b *browser) get(what string, a chromedp.Action[string]) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// text returns the text of the first element matching the CSS selector.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return b.get("read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// waitText waits until the element sel shows text containing want.
func (b *browser) waitText(sel, want string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil && strings.Contains(s, want) {
			return
		}
		if time.Now().After(deadline) {
			b.shot("waiting-for-" + strings.ReplaceAll(want, " ", "-"))
			b.t.Fatalf("%s never showed %q (last: %q, %v)", sel, want, s, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestWebUI drives the platform's web UI in headless Chromium as a user
// would: a bad key, log in, the empty list, bad values in the editor, create
// from a template, follow it to Ready, get its kubeconfig and use it with
// kubectl, sleep and wake, keys and clusters pages, a user without RBAC,
// delete. Screenshots go to test/e2e/_output/TestWebUI.
func TestWebUI(t *testing.T) {
	needHost(t)
	p := startPlatform(t)
	hk := host.Kubeconfig
	ns := createNamespace(t, host.Client, "webui")
	grantUma(t, ns)
	uma := accessKey(t, "e2e-uma", "uma", nil)
	nobody := accessKey(t, "e2e-nobody", "nobody", nil)

	b := newBrowser(t, p.url)
	login := func(key string) {
		b.run("log in", chromedp.Navigate(p.url+"/login"), chromedp.WaitVisible(chromedp.CSS("#key")),
			chromedp.SendKeys(chromedp.CSS("#key"), key), chromedp.Submit(chromedp.CSS("#key")),
			// the list (logged in) or the login page's error
			chromedp.WaitVisible(chromedp.CSS("header nav, p.error")))
	}
	logout := func() {
		b.run("log out", chromedp.Click(chromedp.CSS(".logout button")), chromedp.WaitVisible(chromedp.CSS("#key")))
	}

	// A bad key: the login page says why.
	login("slk_not-a-key")
	b.waitText(".error", "not valid", 10*time.Second)
	b.shot("login-bad-key")

	// Log in: the list, empty, says how to make the first one.
	login(uma)
	b.waitText("#rows", "no virtual clusters yet", 10*time.Second)
	b.shot("list-empty")

	// Create with bad values: the strict parser's message next to the field.
	b.run("open the create page", chromedp.Navigate(p.url+"/new"), chromedp.WaitVisible(chromedp.CSS("#name")))
	b.shot("create-form")
	b.run("submit bad values",
		chromedp.SendKeys(chromedp.CSS("#name"), "webui"),
		chromedp.SetValue(chromedp.CSS("#namespace"), ns),
		chromedp.Click(chromedp.CSS("details.advanced summary")),
		chromedp.SendKeys(chromedp.CSS("#values"), "sync:\n  ingresses:\n    enabeld: true\n"),
		chromedp.Submit(chromedp.CSS("#name")), chromedp.WaitVisible(chromedp.CSS("#values-error")))
	if msg := b.text("#values-error"); !strings.Contains(msg, "sync.ingresses.enabeld") {
		t.Errorf("the values error does not name the path: %q", msg)
	}
	b.shot("create-bad-values")

	// Create from the template; the page follows it to Ready.
	// (Form controls set as a user's choice would set them.)
	b.get("choose the template", chromedp.Evaluate[string](`document.getElementById("values").value = ""; document.getElementById("template").value = "e2e-ui-small"`))
	b.run("create from a template",
		chromedp.Submit(chromedp.CSS("#name")), chromedp.WaitVisible(chromedp.CSS("#status")))
	b.shot("detail-deploying")
	b.waitText("#status .phase", "Ready", 120*time.Second)
	if s := b.text("#status"); !strings.Contains(s, "e2e-ui-small") || !strings.Contains(s, "Ready") {
		t.Errorf("detail status: %q", s)
	}
	b.shot("detail-ready")

	// The list shows it Ready.
	b.run("list", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS("#rows")))
	b.waitText("#rows", "webui", 10*time.Second)
	if row := b.text("#rows"); !strings.Contains(row, "Ready") || !strings.Contains(row, "e2e-ui-small") {
		t.Errorf("list row: %q", row)
	}
	b.shot("list-ready")
	b.run("narrow window", chromedp.EmulateViewport(400, 800))
	b.shot("list-400px")
	b.run("wide window", chromedp.EmulateViewport(1280, 800))

	// Connect: a kubeconfig kubectl uses as is, the same as the download.
	detailURL := fmt.Sprintf("%s/vc/%s/%s/webui", p.url, p.cluster, ns)
	b.run("connect", chromedp.Navigate(detailURL), chromedp.WaitVisible(chromedp.CSS("#connect-h")),
		chromedp.Click(chromedp.Search(`//button[text()="Get a kubeconfig"]`)), chromedp.WaitVisible(chromedp.CSS("#kubeconfig")))
	kubeconfig := b.get("read the kubeconfig", chromedp.Value(chromedp.CSS("#kubeconfig")))
	downloaded := b.get("download the kubeconfig", chromedp.Evaluate[string](`fetch(document.getElementById("download").href).then(r => r.text())`, chromedp.EvalAwaitPromise))
	b.shot("connect-kubeconfig")
	if downloaded != kubeconfig {
		t.Errorf("the downloaded kubeconfig differs from the one shown")
	}
	kcFile := filepath.Join(t.TempDir(), "webui.kubeconfig")
	if err := os.WriteFile(kcFile, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := kubectl(t, kcFile, "", "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("kubectl with the UI's kubeconfig:\n%s", out)
	}

	// Snapshot it from its page, fork the snapshot: the fork has its data.
	kubectl(t, kcFile, "", "create", "configmap", "ui-data", "--from-literal=k=before")
	snapshotAndFork(t, b, p, ns, detailURL)

	// Sleep, then wake.
	b.run("sleep", chromedp.Navigate(detailURL), chromedp.WaitVisible(chromedp.CSS("#actions-h")),
		chromedp.Click(chromedp.Search(`//button[text()="Sleep"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	func() {
		defer func() {
			if t.Failed() {
				out, _ := exec.Command("kubectl", "--kubeconfig", hk, "get", "vc", "webui", "-n", ns, "-o", "yaml").CombinedOutput()
				t.Logf("DEBUG vc:\n%s\nagent:\n%s", out, testenv.Tail(p.agent.Output(), 3000))
			}
		}()
		b.waitText("#status .phase", "Sleeping", 90*time.Second)
		b.waitText("#status", "asleep since", 90*time.Second)
	}()
	b.shot("detail-sleeping")
	b.run("wake", chromedp.Click(chromedp.Search(`//button[text()="Wake"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.waitText("#status .phase", "Ready", 120*time.Second)
	b.shot("detail-woken")

	browseKeysClustersTemplates(t, b, p)

	// A user without RBAC sees nothing and gets the 403 on a direct URL.
	logout()
	login(nobody)
	b.waitText("#rows", "no virtual clusters yet", 10*time.Second)
	b.run("direct URL", chromedp.Navigate(detailURL), chromedp.WaitVisible(chromedp.CSS(".error")))
	if msg := b.text(".error"); !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "nobody") {
		t.Errorf("direct URL without RBAC: %q", msg)
	}
	b.shot("forbidden")
	logout()

	// Delete: the name must be typed.
	login(uma)
	b.run("delete without the name", chromedp.Navigate(detailURL), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.SendKeys(chromedp.CSS("#confirm"), "wrong"), chromedp.Submit(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS(".error")))
	b.shot("delete-unconfirmed")
	b.run("delete", chromedp.SendKeys(chromedp.CSS("#confirm"), "webui"), chromedp.Submit(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.shot("list-deleting")
	kubectl(t, hk, "", "wait", "--for=delete", "virtualcluster/webui", "-n", ns, "--timeout=60s")
}

// snapshotAndFork, as uma (RBAC in namespace ns alone): take a snapshot of
// virtual cluster webui on its page and see it Completed; fork it with a
// bad name, into the default namespace (not hers), under a taken name,
// each refused with why on the same page; then as webui-fork in ns, follow
// the fork to Ready and read the source's ConfigMap ui-data in it with the
// fork's own kubeconfig from its page. The fork is deleted at the end.
func snapshotAndFork(t *testing.T, b *browser, p *platform, ns, detailURL string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			out, _ := exec.Command("kubectl", "--kubeconfig", host.Kubeconfig, "get", "virtualclusters,virtualclustersnapshots", "-n", ns, "-o", "yaml").CombinedOutput()
			t.Logf("DEBUG virtual clusters and snapshots:\n%s\nagent:\n%s", out, testenv.Tail(p.agent.Output(), 3000))
		}
	}()
	b.run("take a snapshot", chromedp.Navigate(detailURL), chromedp.WaitVisible(chromedp.CSS("#snapshots-h")),
		chromedp.Click(chromedp.Search(`//button[text()="Take snapshot"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	snap := b.get("the snapshot's name", chromedp.Evaluate[string](`document.querySelector("#snapshots tr[data-snapshot]").dataset.snapshot`))
	if !regexp.MustCompile(`^webui-[0-9]{8}-[0-9]{6}$`).MatchString(snap) || !strings.Contains(b.text(".flash"), snap) {
		t.Fatalf("snapshot %q (want webui-YYYYMMDD-HHMMSS), flash %q", snap, b.text(".flash"))
	}
	row := `#snapshots tr[data-snapshot="` + snap + `"]`
	b.waitText(row, "Completed", 120*time.Second)
	if s := b.text(row); !regexp.MustCompile(`[0-9.]+ (B|KiB|MiB|GiB)`).MatchString(s) || !strings.Contains(s, "v1.") {
		t.Errorf("the snapshot's row shows no size or Kubernetes version: %q", s)
	}
	b.shot("snapshot-completed")

	// From the cluster's page (no message on it yet); a refusal comes back
	// on that page with why, the fork goes to its own.
	fork := func(what, name, namespace string) {
		t.Helper()
		b.run(what, chromedp.Navigate(detailURL), chromedp.WaitVisible(chromedp.CSS(row+` input[name="name"]`)),
			chromedp.SendKeys(chromedp.CSS(row+` input[name="name"]`), name))
		if namespace != "" { // else left empty, as a user would
			b.run(what, chromedp.SendKeys(chromedp.CSS(row+` input[name="namespace"]`), namespace))
		}
		b.run(what, chromedp.Click(chromedp.CSS(row+` button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("p.error, .flash")))
	}
	for _, c := range []struct{ what, name, namespace, want string }{
		{"fork with a bad name", "Web_Fork", ns, `name "Web_Fork"`},
		{"fork into a namespace not hers", "webui-fork", "", "forbidden"},
		{"fork under a taken name", "webui", ns, "already exists"},
	} {
		fork(c.what, c.name, c.namespace)
		if msg := b.text("main"); !strings.Contains(msg, "was not created") || !strings.Contains(msg, c.want) {
			t.Errorf("%s: want %q on the page, got %q", c.what, c.want, msg)
		}
		b.shot(strings.ReplaceAll(c.what, " ", "-"))
	}
	fork("fork", "webui-fork", ns)
	b.waitText("h1", "webui-fork", 10*time.Second)
	b.shot("fork-deploying")
	b.waitText("#status .phase", "Ready", 180*time.Second)
	if s := b.text("#status"); !strings.Contains(s, "Forked") || !strings.Contains(s, "e2e-ui-small") {
		t.Errorf("the fork's status names no fork or not the source's template: %q", s)
	}
	b.shot("fork-ready")
	b.run("connect to the fork", chromedp.Click(chromedp.Search(`//button[text()="Get a kubeconfig"]`)), chromedp.WaitVisible(chromedp.CSS("#kubeconfig")))
	kcFile := filepath.Join(t.TempDir(), "webui-fork.kubeconfig")
	if err := os.WriteFile(kcFile, []byte(b.get("read the fork's kubeconfig", chromedp.Value(chromedp.CSS("#kubeconfig")))), 0o600); err != nil {
		t.Fatal(err)
	}
	if k := kubectl(t, kcFile, "", "get", "configmap", "ui-data", "-o", "jsonpath={.data.k}"); k != "before" {
		t.Errorf("configmap ui-data in the fork: k=%q, want before", k)
	}
	kubectl(t, host.Kubeconfig, "", "delete", "virtualcluster", "webui-fork", "-n", ns, "--timeout=90s")
}

// grantUma lets uma manage virtual clusters in ns and read templates,
// among them template e2e-ui-small.
func grantUma(t *testing.T, ns string) {
	t.Helper()
	hk := host.Kubeconfig
	kubectl(t, hk, "", "create", "role", "vc-admin", "-n", ns, "--verb=get,list,watch,create,patch,delete", "--resource=virtualclusters.storage.loft.sh,virtualclustersnapshots.storage.loft.sh,events")
	kubectl(t, hk, "", "create", "rolebinding", "uma", "-n", ns, "--role=vc-admin", "--user=uma")
	kubectl(t, hk, "", "create", "clusterrole", "e2e-template-reader", "--verb=get,list", "--resource=virtualclustertemplates.storage.loft.sh")
	kubectl(t, hk, "", "create", "clusterrolebinding", "e2e-uma-templates", "--clusterrole=e2e-template-reader", "--user=uma")
	t.Cleanup(func() {
		for _, o := range []string{"clusterrolebinding/e2e-uma-templates", "clusterrole/e2e-template-reader", "virtualclustertemplate/e2e-ui-small"} {
			_ = exec.Command("kubectl", "--kubeconfig", hk, "delete", o, "--ignore-not-found").Run()
		}
	})
	kubectl(t, hk, `apiVersion: storage.loft.sh/v1
kind: VirtualClusterTemplate
metadata: {name: e2e-ui-small}
spec:
  displayName: Small
  template:
    helmRelease:
      values: |
        sync:
          ingresses:
            enabled: false
`, "apply", "-f", "-")
}

// browseKeysClustersTemplates: access keys are made (shown once), listed,
// revoked; the clusters and templates pages list what there is.
func browseKeysClustersTemplates(t *testing.T, b *browser, p *platform) {
	t.Helper()
	b.run("access keys", chromedp.Navigate(p.url+"/accesskeys"), chromedp.WaitVisible(chromedp.CSS("#description")),
		chromedp.SendKeys(chromedp.CSS("#description"), "from the UI test"), chromedp.Submit(chromedp.CSS("#description")),
		chromedp.WaitVisible(chromedp.CSS("#newkey")))
	newKey := b.get("read the new key", chromedp.Value(chromedp.CSS("#newkey")))
	if !strings.HasPrefix(newKey, "slk_") {
		t.Errorf("new key %q", newKey)
	}
	b.shot("accesskey-created")
	// Revoke that key (not the one this session logged in with).
	created := strings.TrimPrefix(b.text("#created-h"), "New key ")
	b.run("revoke", chromedp.Click(chromedp.CSS(`button[aria-label="Revoke `+created+`"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if flash := b.text(".flash"); !strings.Contains(flash, created) {
		t.Errorf("after revoking %s: %q", created, flash)
	}
	b.shot("accesskey-revoked")
	b.run("clusters", chromedp.Navigate(p.url+"/clusters"), chromedp.WaitVisible(chromedp.CSS("table")))
	b.waitText("table", p.cluster, 10*time.Second)
	b.shot("clusters")
	b.run("templates", chromedp.Navigate(p.url+"/templates"), chromedp.WaitVisible(chromedp.CSS("table")))
	b.waitText("table", "e2e-ui-small", 10*time.Second)
	b.shot("templates")
	b.run("a template", chromedp.Navigate(p.url+"/templates/"+p.cluster+"/e2e-ui-small"), chromedp.WaitVisible(chromedp.CSS("pre")))
	b.shot("template")
}
