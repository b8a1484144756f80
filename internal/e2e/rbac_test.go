package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keycap-dev/keycap/internal/localcluster"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// TestShippedRBAC runs the operator and the data plane as two processes with only the service
// accounts and roles of config/rbac and the admission policies of config/admission (applied with
// kubectl), as config/manager deploys them, and
// checks that together they issue the sample ApiKey; and that the shipped user roles and the data
// plane's account have no access they must not have.
func TestShippedRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap and starts a control plane")
	}
	g := gomega.NewWithT(t)
	kubectlBin, err := testenv.Kubectl()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	assets, err := testenv.AssetsDir()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bin := buildKeycap(t)

	ports := freePorts(t, 9)
	dir := t.TempDir()
	cluster, err := localcluster.Start(context.Background(), localcluster.Options{
		Dir:               filepath.Join(dir, "local"),
		AssetsDir:         assets,
		OperatorNamespace: "keycap-system",
		WebhookURL:        "https://127.0.0.1:" + strconv.Itoa(ports[2]),
		APIServerPort:     ports[0],
		EtcdPort:          ports[1],
	})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(func() { _ = cluster.Stop() })

	kubectlAs := func(kubeconfig string) func(...string) (string, error) {
		return func(args ...string) (string, error) {
			return runKubectl(kubectlBin, kubeconfig, args...)
		}
	}
	admin := kubectlAs(cluster.KubeconfigPath)
	for _, dir := range []string{"rbac", "admission"} {
		out, err := admin("apply", "-k", filepath.Join(testenv.RepoRoot(), "config", dir))
		g.Expect(err).NotTo(gomega.HaveOccurred(), "config/%s: %s", dir, out)
	}

	// Each component gets a kubeconfig holding only its service account's token.
	saKubeconfig := func(sa string) string {
		token, err := admin("create", "token", sa, "-n", "keycap-system", "--duration=1h")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		kc, err := clientcmd.LoadFromFile(cluster.KubeconfigPath)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		for _, auth := range kc.AuthInfos {
			auth.ClientCertificateData, auth.ClientKeyData = nil, nil
			auth.Token = strings.TrimSpace(token)
		}
		path := filepath.Join(dir, sa+".kubeconfig")
		g.Expect(clientcmd.WriteToFile(*kc, path)).To(gomega.Succeed())
		return path
	}
	managerKC, authzKC := saKubeconfig("keycap-manager"), saKubeconfig("keycap-authz")

	// As config/manager/manager.yaml and authz.yaml run them.
	operator := startKeycap(t, bin, assets, []string{
		"--kubeconfig=" + managerKC,
		"--components=controllers,webhook", "--leader-elect", "--operator-namespace=keycap-system",
		"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(ports[2]),
		// The local control plane registers the webhook configuration under its own name.
		"--webhook-configuration-name=" + localcluster.WebhookConfigurationName,
		"--metrics-bind-address=" + hostPort(ports[3]), "--health-probe-bind-address=" + hostPort(ports[4]),
	})
	dataPlane := startKeycap(t, bin, assets, []string{
		"--kubeconfig=" + authzKC,
		"--components=authz", "--operator-namespace=keycap-system",
		"--grpc-bind-address=" + hostPort(ports[5]), "--http-bind-address=" + hostPort(ports[6]),
		"--metrics-bind-address=" + hostPort(ports[7]), "--health-probe-bind-address=" + hostPort(ports[8]),
	})
	for name, p := range map[string]*keycapProcess{"operator": operator, "data plane": dataPlane} {
		g.Eventually(p.output).WithTimeout(startTimeout).WithPolling(pollInterval).
			Should(gomega.ContainSubstring("keycap ready"), "the %s never became ready with its RBAC", name)
	}
	g.Expect(operator.output()).NotTo(gomega.ContainSubstring("forbidden"))
	g.Expect(dataPlane.output()).NotTo(gomega.ContainSubstring("forbidden"))

	g.Eventually(func() error {
		_, err := admin("apply", "-f", filepath.Join(testenv.RepoRoot(), "config", "samples", "apikey.yaml"))
		return err
	}).WithTimeout(startTimeout).WithPolling(pollInterval).Should(gomega.Succeed())
	waitIssued(g, admin)

	// The shipped user role and the data plane's account, checked by the apiserver's authorizer.
	_, err = admin("create", "rolebinding", "alice-keycap-editor", "--clusterrole=keycap-editor", "--user=alice", "-n", "default")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = admin("create", "rolebinding", "bob-keycap-viewer", "--clusterrole=keycap-viewer", "--user=bob", "-n", "default")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	authzSA := "system:serviceaccount:keycap-system:keycap-authz"
	managerSA := "system:serviceaccount:keycap-system:keycap-manager"
	cases := map[string]struct {
		as, verb, resource string
		allowed            bool
	}{
		"an editor creates ApiKeys":                     {"alice", "create", "apikeys.keycap.dev", true},
		"an editor deletes Licenses":                    {"alice", "delete", "licenses.keycap.dev", true},
		"an editor cannot write the digests in status":  {"alice", "patch", "apikeys.keycap.dev --subresource=status", false},
		"an editor cannot update AgentKey status":       {"alice", "update", "agentkeys.keycap.dev --subresource=status", false},
		"an editor gets no Secrets from keycap's roles": {"alice", "get", "secrets", false},
		"a viewer lists AppTokens":                      {"bob", "list", "apptokens.keycap.dev", true},
		"a viewer cannot create ApiKeys":                {"bob", "create", "apikeys.keycap.dev", false},
		"the data plane reads ApiKeys":                  {authzSA, "list", "apikeys.keycap.dev", true},
		"the data plane cannot read Secrets":            {authzSA, "get", "secrets", false},
		"the data plane cannot change a spec":           {authzSA, "update", "apikeys.keycap.dev", false},
		"the data plane reads the public keys":          {authzSA, "get", "configmaps/keycap-public-keys -n keycap-system", true},
		"the data plane reads no other ConfigMap":       {authzSA, "get", "configmaps/other -n keycap-system", false},
		"the data plane reads no ConfigMap elsewhere":   {authzSA, "get", "configmaps/keycap-public-keys", false},
		"the operator writes Secrets":                   {managerSA, "create", "secrets", true},
		"the operator writes status":                    {managerSA, "patch", "apikeys.keycap.dev --subresource=status", true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			// `kubectl auth can-i` exits 1 for "no"; its answer is on stdout either way. Anything
			// else (a resource the server does not have, a flag kubectl does not know) is not a
			// "no": it warns on stderr or fails otherwise.
			args := append([]string{"auth", "can-i", tc.verb}, strings.Fields(tc.resource)...)
			if !strings.Contains(tc.resource, "-n ") {
				args = append(args, "-n", "default")
			}
			out, err := admin(append(args, "--as", tc.as)...)
			want := map[bool]string{true: "yes", false: "no"}[tc.allowed]
			g.Expect(strings.TrimSpace(out)).To(gomega.Equal(want))
			if tc.allowed {
				g.Expect(err).NotTo(gomega.HaveOccurred())
				return
			}
			var exit *exec.ExitError
			g.Expect(errors.As(err, &exit)).To(gomega.BeTrue(), "kubectl failed: %v", err)
			g.Expect(exit.ExitCode()).To(gomega.Equal(1), "kubectl failed: %v", err)
			g.Expect(err).NotTo(gomega.MatchError(gomega.ContainSubstring("Warning")), "kubectl answered no for another reason")
		})
	}
}

// runKubectl runs kubectl with kubeconfig; the error carries kubectl's stderr.
func runKubectl(kubectlBin, kubeconfig string, args ...string) (string, error) {
	return kubectlCmd(kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}
