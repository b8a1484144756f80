package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/localcluster"
	"github.com/keycap-dev/keycap/internal/testenv"
)

const (
	// issueTimeout bounds the operator issuing, rotating or re-issuing a key and the data plane
	// seeing the result (a watch event).
	issueTimeout = 2 * time.Minute
	// rotationGrace is the grace period of the rotated ApiKey: long enough that the rotated key
	// reaches the data plane well inside it on a loaded machine, short enough to wait out.
	rotationGrace = 40 * time.Second
)

// deployed is the built keycap run as config/manager deploys it: the operator
// (--components=controllers,webhook, leader-elected) and the standalone data plane
// (--components=authz), each under its own service account of config/rbac, on a local control
// plane with a garbage collector. Both log at debug level into a buffer.
type deployed struct {
	cluster             *localcluster.Cluster
	admin               func(...string) (string, error)
	operator, dataPlane *keycapProcess
	grpcAddr, httpAddr  string
	// metrics are the metrics endpoints of the operator and the data plane.
	metrics []string
	dir     string
}

func deploy(t *testing.T) *deployed {
	t.Helper()
	g := gomega.NewWithT(t)
	kubectlBin, err := testenv.Kubectl()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	assets, err := testenv.AssetsDir()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bin := buildKeycap(t)

	ports := freePorts(t, 9)
	d := &deployed{dir: t.TempDir()}
	d.cluster, err = localcluster.Start(context.Background(), localcluster.Options{
		Dir:               filepath.Join(d.dir, "local"),
		AssetsDir:         assets,
		OperatorNamespace: "keycap-system",
		WebhookURL:        "https://127.0.0.1:" + strconv.Itoa(ports[2]),
		APIServerPort:     ports[0],
		EtcdPort:          ports[1],
	})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(func() { _ = d.cluster.Stop() })
	d.admin = func(args ...string) (string, error) { return runKubectl(kubectlBin, d.cluster.KubeconfigPath, args...) }
	_, err = d.admin("apply", "-k", filepath.Join(testenv.RepoRoot(), "config", "rbac"))
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// Each component gets a kubeconfig holding only a token of its service account (TokenRequest).
	saKubeconfig := func(sa string) string {
		token, err := d.admin("create", "token", sa, "-n", "keycap-system", "--duration=1h")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		kc, err := clientcmd.LoadFromFile(d.cluster.KubeconfigPath)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		for _, auth := range kc.AuthInfos {
			auth.ClientCertificateData, auth.ClientKeyData = nil, nil
			auth.Token = strings.TrimSpace(token)
		}
		path := filepath.Join(d.dir, sa+".kubeconfig")
		g.Expect(clientcmd.WriteToFile(*kc, path)).To(gomega.Succeed())
		return path
	}
	managerKC, authzKC := saKubeconfig("keycap-manager"), saKubeconfig("keycap-authz")

	d.grpcAddr, d.httpAddr = hostPort(ports[5]), hostPort(ports[6])
	d.metrics = []string{hostPort(ports[3]), hostPort(ports[7])}
	d.operator = startKeycap(t, bin, assets, []string{
		"--kubeconfig=" + managerKC, "--zap-log-level=debug",
		"--components=controllers,webhook", "--leader-elect", "--operator-namespace=keycap-system",
		"--webhook-configuration-name=" + localcluster.WebhookConfigurationName,
		"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(ports[2]),
		"--metrics-bind-address=" + d.metrics[0], "--health-probe-bind-address=" + hostPort(ports[4]),
	})
	d.dataPlane = startKeycap(t, bin, assets, []string{
		"--kubeconfig=" + authzKC, "--zap-log-level=debug",
		"--components=authz", "--operator-namespace=keycap-system",
		"--grpc-bind-address=" + d.grpcAddr, "--http-bind-address=" + d.httpAddr,
		"--metrics-bind-address=" + d.metrics[1], "--health-probe-bind-address=" + hostPort(ports[8]),
	})
	for name, p := range map[string]*keycapProcess{"operator": d.operator, "data plane": d.dataPlane} {
		g.Eventually(p.output).WithTimeout(startTimeout).WithPolling(pollInterval).
			Should(gomega.ContainSubstring("keycap ready"), "the %s never became ready", name)
	}
	return d
}

// apply applies manifest with kubectl, retrying while the webhook is not serving yet.
func (d *deployed) apply(g *gomega.WithT, manifest string) {
	f := filepath.Join(d.dir, fmt.Sprintf("manifest-%d.yaml", time.Now().UnixNano()))
	g.Expect(os.WriteFile(f, []byte(manifest), 0o600)).To(gomega.Succeed())
	g.Eventually(func() error { _, err := d.admin("apply", "-f", f); return err }).
		WithTimeout(startTimeout).WithPolling(pollInterval).Should(gomega.Succeed())
}

// secretValue returns the decoded data key of a Secret, "" if it is not there (yet).
func (d *deployed) secretValue(ns, name, dataKey string) string {
	out, err := d.admin("get", "secret", name, "-n", ns, "--ignore-not-found", "-o", "jsonpath={.data."+dataKey+"}")
	if err != nil || out == "" {
		return ""
	}
	v, err := base64.StdEncoding.DecodeString(out)
	if err != nil {
		return ""
	}
	return string(v)
}

// waitSecret waits until the operator has written dataKey into Secret name of the default
// namespace and returns it.
func (d *deployed) waitSecret(g *gomega.WithT, name, dataKey string) string {
	var v string
	g.Eventually(func() string { v = d.secretValue("default", name, dataKey); return v }).
		WithTimeout(issueTimeout).WithPolling(pollInterval).ShouldNot(gomega.BeEmpty(), "no %s in Secret %s", dataKey, name)
	return v
}

// answer is what the data plane said to one check.
type answer struct {
	status int
	reason string
	// at is when the answer arrived: the data plane judged the request before it.
	at time.Time
}

func (a answer) allowed() bool { return a.status == http.StatusOK }

// httpCheck asks the data plane's forward-auth endpoint with the given headers.
func (d *deployed) httpCheck(g *gomega.WithT, query string, headers ...string) answer {
	req, err := http.NewRequest(http.MethodGet, "http://"+d.httpAddr+"/check"+query, nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var denial struct {
		Error struct {
			Reason string `json:"reason"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &denial)
	return answer{status: resp.StatusCode, reason: denial.Error.Reason, at: time.Now()}
}

// grpcCheck asks the data plane's ext_authz gRPC endpoint with x-api-key: key and the scope.
func (d *deployed) grpcCheck(g *gomega.WithT, key, scope string) answer {
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/videos", Host: "api.example",
			Headers: map[string]string{"x-api-key": key},
		}},
		ContextExtensions: map[string]string{"keycap.dev/scopes": scope},
	}})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	if resp.GetOkResponse() != nil {
		return answer{status: http.StatusOK, at: time.Now()}
	}
	return answer{status: int(resp.GetDeniedResponse().GetStatus().GetCode()), at: time.Now()}
}

const rotatingAPIKey = `apiVersion: keycap.dev/v1alpha1
kind: ApiKey
metadata:
  name: rotating
  namespace: default
spec:
  prefix: rot
  scopes: [videos:read]
  rotation:
    every: 1h
    gracePeriod: %s
`

// TestDeployedDataPlane drives the built binary as it is deployed: the operator issues an ApiKey
// and rotates it on request (the keycap.dev/rotate annotation, what `kubectl keycap rotate`
// writes); the standalone data plane, under the read-only identity of config/rbac/authz, allows
// the new key at once, the old key through its grace period and refuses it after; a plaintext key
// added by a metadata-only update (annotate, label) is refused by the webhook. Then every key,
// token and licence key the flow created is searched for in every log line, Event, object,
// metric and the data plane's memory: none may appear.
func TestDeployedDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap and starts a control plane")
	}
	d := deploy(t)
	// Every plaintext the flow creates or sends, for the final sweep.
	var plaintexts []string
	// webhookOnly is a key only the apiserver and the webhook ever see (a refused annotation).
	var webhookOnly string

	t.Run("rotation through the standalone data plane", func(t *testing.T) {
		g := gomega.NewWithT(t)
		d.apply(g, fmt.Sprintf(rotatingAPIKey, rotationGrace))
		var old string
		g.Eventually(func() string { old = d.secretValue("default", "rotating", "api-key"); return old }).
			WithTimeout(issueTimeout).WithPolling(pollInterval).ShouldNot(gomega.BeEmpty(), "the operator never issued the key")
		plaintexts = append(plaintexts, old)
		g.Eventually(func() bool { return d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", old).allowed() }).
			WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.BeTrue(), "the data plane never allowed the issued key")
		g.Expect(d.grpcCheck(g, old, "videos:read").allowed()).To(gomega.BeTrue())
		g.Expect(d.httpCheck(g, "?scopes=videos:write", "X-Api-Key", old).reason).To(gomega.Equal("INSUFFICIENT_SCOPE"))

		_, err := d.admin("annotate", "apikey", "rotating", "-n", "default", "--overwrite",
			"keycap.dev/rotate="+time.Now().UTC().Format(time.RFC3339Nano))
		g.Expect(err).NotTo(gomega.HaveOccurred())
		var current string
		g.Eventually(func() string { current = d.secretValue("default", "rotating", "api-key"); return current }).
			WithTimeout(issueTimeout).WithPolling(pollInterval).ShouldNot(gomega.Or(gomega.BeEmpty(), gomega.Equal(old)), "the operator never rotated the key")
		plaintexts = append(plaintexts, current)

		// The status lists both digests, the current first, and when the old one stops.
		var until time.Time
		g.Eventually(func(g gomega.Gomega) {
			out, err := d.admin("get", "apikey", "rotating", "-n", "default", "-o",
				`jsonpath={.status.digests[0]} {.status.digests[1]} {.status.previousKeyValidUntil}`)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			f := strings.Fields(out)
			g.Expect(f).To(gomega.Equal([]string{keys.Digest(current), keys.Digest(old), f[len(f)-1]}))
			until, err = time.Parse(time.RFC3339, f[2])
			g.Expect(err).NotTo(gomega.HaveOccurred())
		}).WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.Succeed())

		g.Eventually(func() bool { return d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", current).allowed() }).
			WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.BeTrue(), "the data plane never allowed the rotated key")
		g.Expect(d.grpcCheck(g, current, "videos:read").allowed()).To(gomega.BeTrue())

		// Through the grace period the old key works on both transports: every answer that arrived
		// before previousKeyValidUntil was judged before it, so it must be an allow.
		during := 0
		for time.Now().Before(until) {
			for _, a := range []answer{d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", old), d.grpcCheck(g, old, "videos:read")} {
				if a.at.Before(until) {
					g.Expect(a.allowed()).To(gomega.BeTrue(), "the old key was refused (%d %s) %s before its grace period ended", a.status, a.reason, until.Sub(a.at))
					during++
				}
			}
			g.Expect(d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", current).allowed()).To(gomega.BeTrue())
			time.Sleep(pollInterval) // pacing the checks through the grace period, not waiting for a state
		}
		g.Expect(during).To(gomega.BeNumerically(">", 0), "no check of the old key landed inside its grace period")

		// After it, the old key is refused (judged at request time, then dropped from status) and
		// the current one still works.
		g.Eventually(func() string { return d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", old).reason }).
			WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.Or(gomega.Equal("NOT_FOUND"), gomega.Equal("EXPIRED")))
		g.Expect(d.grpcCheck(g, old, "videos:read").status).To(gomega.Equal(http.StatusUnauthorized))
		g.Expect(d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", current).allowed()).To(gomega.BeTrue())
		g.Eventually(func() (string, error) {
			return d.admin("get", "apikey", "rotating", "-n", "default", "-o", "jsonpath={.status.digests}")
		}).WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.Equal(`["`+keys.Digest(current)+`"]`),
			"the old digest stayed in status after its grace period")
	})

	t.Run("a plaintext key added by a metadata-only update is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		live := d.secretValue("default", "rotating", "api-key")
		unknown, err := keys.Generate("leak")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		plaintexts = append(plaintexts, unknown)
		webhookOnly = unknown
		for _, key := range []string{live, unknown} {
			for _, update := range [][]string{
				{"annotate", "apikey", "rotating", "-n", "default", "--overwrite", "example.com/note=" + key},
				{"label", "apikey", "rotating", "-n", "default", "--overwrite", "leak=" + key},
			} {
				_, err := d.admin(update...)
				g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("plaintext credential")), "kubectl %s was not refused as a plaintext credential", update[0])
				// kubectlCmd's error starts with the command line (which holds the key); the
				// apiserver's answer follows the exit status.
				_, answer, _ := strings.Cut(err.Error(), "exit status 1: ")
				g.Expect(answer).To(gomega.ContainSubstring("plaintext credential"))
				g.Expect(answer).NotTo(gomega.ContainSubstring(key), "the refusal echoes the key")
			}
		}
		out, err := d.admin("get", "apikey", "rotating", "-n", "default", "-o", "json")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(out).NotTo(gomega.Or(gomega.ContainSubstring(live), gomega.ContainSubstring(unknown)))
	})

	t.Run("no plaintext in logs, events, objects, metrics or the data plane's memory", func(t *testing.T) {
		g := gomega.NewWithT(t)
		plaintexts = append(plaintexts, exerciseEveryKind(t, d)...)
		// An ApiKey the data plane is never asked about.
		d.apply(g, strings.ReplaceAll(strings.ReplaceAll(rotatingAPIKey, "rotating", "unasked"), "%s", "1m"))
		plaintexts = append(plaintexts, d.waitSecret(g, "unasked", "api-key"))
		needles := needlesOf(plaintexts)
		// The operator's own keys: AppToken signing keys and the webhook's CA and serving keys.
		var operatorKeys []needle
		for _, name := range []string{"keycap-signing-keys", "keycap-webhook-tls"} {
			out, err := d.admin("get", "secret", name, "-n", "keycap-system", "-o", "json")
			g.Expect(err).NotTo(gomega.HaveOccurred())
			var s struct {
				Data map[string][]byte `json:"data"`
			}
			g.Expect(json.Unmarshal([]byte(out), &s)).To(gomega.Succeed())
			for k, v := range s.Data {
				if strings.Contains(k, "key") {
					operatorKeys = append(operatorKeys, pemNeedles(name+"/"+k, v)...)
				}
			}
		}
		g.Expect(operatorKeys).NotTo(gomega.BeEmpty())
		needles = append(needles, operatorKeys...)

		sources := map[string][]byte{
			"operator log":   []byte(d.operator.output()),
			"data plane log": []byte(d.dataPlane.output()),
		}
		logs, _ := filepath.Glob(filepath.Join(d.dir, "local", "logs", "*.log"))
		for _, f := range logs {
			b, err := os.ReadFile(f)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			sources[filepath.Base(f)] = b
		}
		g.Expect(sources["operator log"]).To(gomega.ContainSubstring(`"level":"debug"`), "the operator does not log at debug level")
		events, err := d.admin("get", "events", "-A", "-o", "json")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(events).To(gomega.ContainSubstring("Rotated"), "no Event of the flow was collected")
		sources["events"] = []byte(events)
		objects, err := d.admin("get", "apikeys,agentkeys,apptokens,licenses", "-A", "-o", "json")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		sources["credential objects (spec, status, metadata)"] = []byte(objects)
		for i, addr := range d.metrics {
			sources[fmt.Sprintf("metrics %d", i)] = scrape(g, addr)
		}

		for what, data := range sources {
			for _, n := range needles {
				g.Expect(bytes.Contains(data, n.value)).To(gomega.BeFalse(), "%s found in %s", n.what, what)
			}
		}

		// The data plane's whole memory, read from the running process. It learns credentials only
		// as digests: the key of a credential it was never asked about, the operator's private
		// keys and a key only the webhook saw must not be in it. The raw digest of the unasked
		// key, which its index must hold, proves the read covers the index.
		//
		// Keys it was asked about are not searched: the Go runtime does not clear freed memory, so
		// the request buffers of recent checks still hold them (hundreds of copies of a key
		// checked a few hundred times); that is logged, not asserted.
		unasked := d.waitSecret(g, "unasked", "api-key")
		strict := append(needlesOf([]string{unasked, webhookOnly}), operatorKeys...)
		sum := sha256.Sum256([]byte(unasked))
		var mem []byte
		g.Eventually(func() bool { mem = processMemory(t, d.dataPlane.cmd.Process.Pid); return bytes.Contains(mem, sum[:]) }).
			WithTimeout(issueTimeout).WithPolling(time.Second).Should(gomega.BeTrue(), "the digest of a live key never appeared in the data plane's memory: the read misses its index")
		for _, n := range strict {
			g.Expect(bytes.Contains(mem, n.value)).To(gomega.BeFalse(), "%s found in the data plane's memory", n.what)
		}
		for _, n := range needles {
			if c := bytes.Count(mem, n.value); c > 0 {
				t.Logf("a key the data plane was asked about, %s, is in its memory %d times (request buffers)", n.what, c)
			}
		}
	})
}

// needle is a byte string that must not appear, and what it is (never the secret itself).
type needle struct {
	what  string
	value []byte
}

// needlesOf returns each plaintext as it is and base64-encoded (how a []byte lands in JSON).
func needlesOf(plaintexts []string) []needle {
	var out []needle
	for i, p := range plaintexts {
		if p == "" {
			continue
		}
		what := fmt.Sprintf("plaintext #%d (%s...)", i, keys.Hint(p))
		out = append(out,
			needle{what, []byte(p)},
			needle{what + " base64", []byte(base64.StdEncoding.EncodeToString([]byte(p)))})
	}
	return out
}

// pemNeedles returns the body lines of the PEM blocks in data (a private key as it would be
// written out), or data itself when it is not PEM.
func pemNeedles(what string, data []byte) []needle {
	var out []needle
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			out = append(out, needle{what, []byte(line)})
		}
	}
	if len(out) == 0 && len(data) >= 16 {
		out = append(out, needle{what, data})
	}
	return out
}

// exerciseEveryKind applies an ApiKey with an AgentKey, an AppToken and a License, uses each
// through the data plane (allowed, refused when disabled, an activation), and returns their
// plaintexts.
func exerciseEveryKind(t *testing.T, d *deployed) []string {
	t.Helper()
	g := gomega.NewWithT(t)
	samples := filepath.Join(testenv.RepoRoot(), "config", "samples")
	for _, f := range []string{"apikey.yaml", "apikey_agentkey.yaml", "apptoken.yaml", "license.yaml"} {
		g.Eventually(func() error { _, err := d.admin("apply", "-n", "default", "-f", filepath.Join(samples, f)); return err }).
			WithTimeout(startTimeout).WithPolling(pollInterval).Should(gomega.Succeed())
	}
	secretOf := func(name, dataKey string) string { return d.waitSecret(g, name, dataKey) }
	apiKey := secretOf("acme-backend", "api-key")
	agentKey := secretOf("acme-backend-agent-7", "agent-key")
	token := secretOf("acme-reporting", "token")
	licenseKey := secretOf("acme-pro-license", "license-key")

	allowed := func(what string, query string, headers ...string) {
		g.Eventually(func() int { return d.httpCheck(g, query, headers...).status }).
			WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.Equal(http.StatusOK), "%s never allowed", what)
	}
	allowed("the ApiKey", "?scopes=videos:read", "X-Api-Key", apiKey)
	allowed("the AgentKey", "?scopes=videos:read", "Authorization", "Bearer "+agentKey)
	allowed("the AppToken", "?scopes=reports:read", "Authorization", "Bearer "+token)
	g.Eventually(func() (int, error) {
		req, err := http.NewRequest(http.MethodPost, "http://"+d.httpAddr+"/api/commercial/activate", strings.NewReader(`{"reset":false}`))
		if err != nil {
			return 0, err
		}
		req.Header.Set("licensekey", licenseKey)
		req.Header.Set("instanceid", "node-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}).WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.Equal(http.StatusOK), "the licence never activated")
	allowed("the licence", "?entitlements=sso", "licensekey", licenseKey, "instanceid", "node-1")

	// Refusals log too: a disabled credential, a wrong instance, an unknown key.
	_, err := d.admin("patch", "agentkey", "acme-backend-agent-7", "-n", "default", "--type=merge", "-p", `{"spec":{"disabled":true}}`)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Eventually(func() string { return d.httpCheck(g, "?scopes=videos:read", "X-Api-Key", agentKey).reason }).
		WithTimeout(issueTimeout).WithPolling(pollInterval).Should(gomega.Equal("DISABLED"))
	g.Expect(d.httpCheck(g, "", "licensekey", licenseKey, "instanceid", "node-2").allowed()).To(gomega.BeFalse())
	unknown, err := keys.Generate("acme")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(d.httpCheck(g, "", "X-Api-Key", unknown).reason).To(gomega.Equal("NOT_FOUND"))
	http.DefaultClient.CloseIdleConnections()
	return []string{apiKey, agentKey, token, licenseKey, unknown}
}

// scrape returns the metrics endpoint's page.
func scrape(g *gomega.WithT, addr string) []byte {
	resp, err := http.Get("http://" + addr + "/metrics")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK))
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(string(b)).To(gomega.ContainSubstring("go_memstats_heap_inuse_bytes"))
	return b
}

// processMemory returns the contents of every readable mapping of process pid (its heap, stacks
// and data), read through /proc/pid/mem as a core dump would.
func processMemory(t *testing.T, pid int) []byte {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatalf("reading the data plane's memory map: %v", err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatalf("opening the data plane's memory: %v", err)
	}
	defer func() { _ = mem.Close() }()
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(string(maps)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "r") || (len(f) >= 6 && strings.HasPrefix(f[5], "[v")) {
			continue // unreadable, or the kernel's vvar/vsyscall pages
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end-start > 1<<30 {
			continue
		}
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start)) //nolint:gosec // addresses of a 64-bit process fit
		out = append(out, buf[:n]...)
	}
	if len(out) < 1<<20 {
		t.Fatalf("read only %d bytes of the data plane's memory", len(out))
	}
	return out
}
