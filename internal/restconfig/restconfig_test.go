package restconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFromInlineKubeconfigRefusesWhatRunsOrReadsLocally(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	const head = "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\n"
	cluster := "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: %s}\n"
	for _, tc := range []struct {
		name, kubeconfig, want string
	}{
		{"exec plugin", head + fmt.Sprintf(cluster, "Zm9v") + "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n      args: [-c, 'touch " + marker + "']\n      interactiveMode: Never\n", "exec plugin (sh)"},
		{"auth provider", head + fmt.Sprintf(cluster, "Zm9v") + "users:\n- name: u\n  user:\n    auth-provider: {name: oidc}\n", "auth provider oidc"},
		{"token file", head + fmt.Sprintf(cluster, "Zm9v") + "users:\n- name: u\n  user: {tokenFile: /etc/shadow}\n", "tokenFile /etc/shadow"},
		{"client key file", head + fmt.Sprintf(cluster, "Zm9v") + "users:\n- name: u\n  user: {client-certificate: /a.crt, client-key: /a.key}\n", "client certificate or key files"},
		{"CA file", head + "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', certificate-authority: /etc/ssl/x.pem}\nusers:\n- name: u\n  user: {token: abc}\n", "certificate-authority file /etc/ssl/x.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := FromInlineKubeconfig([]byte(tc.kubeconfig))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want an error naming %q", cfg, err, tc.want)
			}
		})
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the exec plugin ran: %s exists", marker)
	}
	// An admin's explicit --allow-exec-plugin accepts the plugin, and
	// nothing else.
	execUser := "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      interactiveMode: Never\n"
	if _, err := FromKubeconfig([]byte(head+fmt.Sprintf(cluster, "Zm9v")+execUser), true); err != nil {
		t.Errorf("exec plugin with allowExec: %v", err)
	}
	if _, err := FromKubeconfig([]byte(head+fmt.Sprintf(cluster, "Zm9v")+"users:\n- name: u\n  user: {tokenFile: /etc/shadow}\n"), true); err == nil {
		t.Error("allowExec also accepted a tokenFile")
	}
	cfg, err := FromInlineKubeconfig([]byte(head + fmt.Sprintf(cluster, "Zm9v") + "users:\n- name: u\n  user: {token: abc}\n"))
	if err != nil || cfg.BearerToken != "abc" || string(cfg.CAData) != "foo" {
		t.Errorf("inline kubeconfig: %+v, %v", cfg, err)
	}
}
