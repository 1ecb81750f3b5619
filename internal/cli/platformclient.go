package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/sublet-dev/sublet/api/storage/v1"
	"github.com/sublet-dev/sublet/internal/platformapi"
)

// loginConfig is what `sublet login` saves: which server, and the key.
type loginConfig struct {
	Server    string `json:"server"`
	AccessKey string `json:"accessKey"`
	// CAFile is the CA the server's certificate is checked against; empty
	// uses the system's roots.
	CAFile   string `json:"certificateAuthority,omitempty"`
	Insecure bool   `json:"insecureSkipTLSVerify,omitempty"`
}

// configPath is $SUBLET_CONFIG, else ~/.sublet/config.json.
func configPath() string {
	if p := os.Getenv("SUBLET_CONFIG"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".sublet", "config.json")
}

func loadLogin() (*loginConfig, error) {
	data, err := os.ReadFile(configPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("not logged in: run 'sublet login URL --access-key KEY' first")
	}
	if err != nil {
		return nil, err
	}
	c := &loginConfig{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%s: %w (log in again)", configPath(), err)
	}
	return c, nil
}

func (c *loginConfig) save() error {
	if err := os.MkdirAll(filepath.Dir(configPath()), 0o700); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(c, "", "  ")
	return os.WriteFile(configPath(), append(data, '\n'), 0o600)
}

// restConfig reaches path under the server (e.g. /kubernetes/cluster/C).
func (c *loginConfig) restConfig(path string) *rest.Config {
	return &rest.Config{
		Host:            strings.TrimSuffix(c.Server, "/") + path,
		BearerToken:     c.AccessKey,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile, Insecure: c.Insecure},
		QPS:             20, Burst: 40,
	}
}

func (c *loginConfig) httpClient() (*http.Client, error) {
	tlsCfg := &tls.Config{InsecureSkipVerify: c.Insecure} //nolint:gosec // the user asked for --insecure
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}, nil
}

// getJSON GETs an /api/v1 path of the server into out.
func (c *loginConfig) getJSON(ctx context.Context, path string, out interface{}) error {
	return c.callJSON(ctx, http.MethodGet, path, nil, out)
}

// callJSON sends in (if not nil) as JSON to path and decodes the reply into
// out; an error reply becomes an error with the server's message.
func (c *loginConfig) callJSON(ctx context.Context, method, path string, in, out interface{}) error {
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Server, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.AccessKey)
	resp, err := hc.Do(req)
	if err != nil {
		var unknownCA x509.UnknownAuthorityError
		if errors.As(err, &unknownCA) {
			return fmt.Errorf("%s: its certificate is signed by an unknown authority; pass --ca-file (the server prints its CA path) or --insecure", c.Server)
		}
		return fmt.Errorf("reach %s: %w", c.Server, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		st := &metav1.Status{}
		if json.Unmarshal(reply, st) == nil && st.Message != "" {
			return &replyError{code: resp.StatusCode, msg: fmt.Sprintf("%s (HTTP %d)", st.Message, resp.StatusCode)}
		}
		return &replyError{code: resp.StatusCode, msg: fmt.Sprintf("%s%s: HTTP %d", c.Server, path, resp.StatusCode)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(reply, out)
}

// replyError is an error reply of the platform server.
type replyError struct {
	code int
	msg  string
}

func (e *replyError) Error() string { return e.msg }

// isNotFound reports whether err is the server's 404 (a path an older
// server does not serve).
func isNotFound(err error) bool {
	var re *replyError
	return errors.As(err, &re) && re.code == http.StatusNotFound
}

func (c *loginConfig) whoami(ctx context.Context) (*platformapi.User, error) {
	u := &platformapi.User{}
	return u, c.getJSON(ctx, "/api/v1/whoami", u)
}

// clusterClient is a client for storage.loft.sh objects in cluster name,
// through the server as the logged-in user.
func (c *loginConfig) clusterClient(name string) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := storagev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(c.restConfig("/kubernetes/cluster/"+name), client.Options{Scheme: scheme})
}

// pickCluster returns name, or the only connected cluster, or an error
// listing them.
func (c *loginConfig) pickCluster(ctx context.Context, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	var clusters []platformapi.ClusterInfo
	if err := c.getJSON(ctx, "/api/v1/clusters", &clusters); err != nil {
		return "", err
	}
	switch len(clusters) {
	case 0:
		return "", errors.New("no cluster is connected to the platform (sublet connect cluster NAME --kubeconfig FILE)")
	case 1:
		return clusters[0].Name, nil
	}
	var names []string
	for _, cl := range clusters {
		names = append(names, cl.Name)
	}
	sort.Strings(names)
	return "", fmt.Errorf("several clusters are connected; pass --cluster, one of: %s", strings.Join(names, ", "))
}
