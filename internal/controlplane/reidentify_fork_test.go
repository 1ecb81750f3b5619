package controlplane

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sublet-dev/sublet/internal/testenv"
)

// TestReidentifyFork forks a running virtual-mode control plane on each
// datastore: the SQLite one copied with BackupSQLite while it runs, the
// etcd one copied after it stopped. The fork, reidentified and started, has
// a new kube-system UID; its token controller has filled the source's
// service-account token secret again, with a token that authenticates on
// the fork, while the source's token does not.
func TestReidentifyFork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four control planes")
	}
	for _, ds := range []string{DatastoreSQLite, DatastoreEtcd} {
		t.Run(ds, func(t *testing.T) { testReidentifyFork(t, ds) })
	}
}

func testReidentifyFork(t *testing.T, ds string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srcDir, forkDir := t.TempDir(), t.TempDir()
	src, err := testenv.StartControlPlane(ctx, srcDir, "--datastore", ds)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Kill()
	srcUID := kubeSystemUID(ctx, t, src.Client)
	if _, err := src.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "robot-token", Annotations: map[string]string{corev1.ServiceAccountNameKey: "robot", "keep": "me"}},
		Type:       corev1.SecretTypeServiceAccountToken,
		Data:       map[string][]byte{"extra": []byte("kept")},
	}
	if _, err := src.Client.CoreV1().Secrets("default").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srcToken := waitForToken(ctx, t, src.Client, nil)

	marker, err := os.ReadFile(filepath.Join(srcDir, MarkerFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(forkDir, MarkerFile), marker, 0o600); err != nil {
		t.Fatal(err)
	}
	if ds == DatastoreSQLite {
		fork := dataDir{root: forkDir}
		if err := os.MkdirAll(filepath.Dir(fork.sqlite()), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := BackupSQLite(ctx, srcDir, fork.sqlite()); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Stop(); err != nil {
		t.Fatalf("stop the source: %v\n%s", err, src.Output())
	}
	if ds == DatastoreEtcd {
		copyDir(t, dataDir{root: srcDir}.etcd(), dataDir{root: forkDir}.etcd())
	}

	clusterID, err := Reidentify(ctx, forkDir)
	if err != nil {
		t.Fatal(err)
	}
	fork, err := testenv.StartControlPlane(ctx, forkDir, "--datastore", ds)
	if err != nil {
		t.Fatal(err)
	}
	defer fork.Kill()
	if uid := kubeSystemUID(ctx, t, fork.Client); uid != clusterID || uid == srcUID {
		t.Errorf("the fork's kube-system UID is %s; want %s, returned by Reidentify (the source's: %s)", uid, clusterID, srcUID)
	}
	forkToken := waitForToken(ctx, t, fork.Client, srcToken)
	checkForkToken(ctx, t, fork, forkToken, srcToken)
}

// kubeSystemUID is the cluster ID: the UID of the kube-system namespace.
func kubeSystemUID(ctx context.Context, t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	ns, err := c.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(ns.UID)
}

// waitForToken waits until default/robot-token holds a token other than
// old and returns it.
func waitForToken(ctx context.Context, t *testing.T, c kubernetes.Interface, old []byte) []byte {
	t.Helper()
	var s *corev1.Secret
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		s, err = c.CoreV1().Secrets("default").Get(ctx, "robot-token", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		token := s.Data[corev1.ServiceAccountTokenKey]
		return len(token) > 0 && !bytes.Equal(token, old), nil
	})
	if err != nil {
		t.Fatalf("the token controller filled no new token in: %v (secret: %v)", err, s)
	}
	if s.Annotations["keep"] != "me" || string(s.Data["extra"]) != "kept" {
		t.Errorf("the token secret lost its own annotation or data: %v", s)
	}
	if string(s.Data[corev1.ServiceAccountNamespaceKey]) != "default" {
		t.Errorf("the token secret's namespace is %q", s.Data[corev1.ServiceAccountNamespaceKey])
	}
	return s.Data[corev1.ServiceAccountTokenKey]
}

// checkForkToken checks that the fork's token secret holds the fork's CA and
// that its token, not the source's, authenticates on the fork.
func checkForkToken(ctx context.Context, t *testing.T, fork *testenv.Process, token, srcToken []byte) {
	t.Helper()
	ca, err := os.ReadFile(PKI(fork.DataDir).CACert())
	if err != nil {
		t.Fatal(err)
	}
	s, err := fork.Client.CoreV1().Secrets("default").Get(ctx, "robot-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Data[corev1.ServiceAccountRootCAKey], ca) {
		t.Error("the fork's token secret does not hold the fork's CA")
	}
	review := func(token []byte) (*authenticationv1.SelfSubjectReview, error) {
		cfg := rest.AnonymousClientConfig(fork.Config)
		cfg.BearerToken = string(token)
		return kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	}
	r, err := review(token)
	if err != nil {
		t.Fatalf("the fork's token on the fork: %v", err)
	}
	if want := "system:serviceaccount:default:robot"; r.Status.UserInfo.Username != want {
		t.Errorf("the fork's token authenticates as %q, want %q", r.Status.UserInfo.Username, want)
	}
	if _, err := review(srcToken); !apierrors.IsUnauthorized(err) {
		t.Errorf("the source's token on the fork: %v; want 401 Unauthorized", err)
	}
}

// copyDir copies the directory tree from into to, with private directories
// as etcd wants them.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(to, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return err
		}
		return os.Chmod(path, 0o700)
	})
	if err != nil {
		t.Fatal(err)
	}
}
