package authz_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/routepolicy"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// findTraefik returns the Traefik named by KEYCAP_TRAEFIK (hack/build-test-proxies.sh traefik
// builds one from the Go module proxy) or on PATH, or skips: Traefik has no Debian package, and
// its cold build (every DNS provider SDK of its ACME client) is far too long for `make test`.
func findTraefik(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KEYCAP_TRAEFIK"); p != "" {
		return p
	}
	if p, err := exec.LookPath("traefik"); err == nil {
		return p
	}
	t.Skip("traefik not found: build it with hack/build-test-proxies.sh traefik and set KEYCAP_TRAEFIK")
	return ""
}

func TestTraefikForwardAuth(t *testing.T) {
	bin := findTraefik(t)
	dp := startDataPlane(t, routepolicy.SourceForwarded)
	ns := newNamespace(t)
	host := "shop-" + ns + ".example.com"
	createShopPolicy(t, ns, host)
	upstream := echoUpstream(t)
	port := freePort(t) // last, once the upstream listens (see freePort)
	cmd := exec.Command(bin,
		"--entryPoints.web.address=127.0.0.1:"+strconv.Itoa(port),
		"--providers.file.filename="+filepath.Join(testenv.RepoRoot(), "config", "samples", "integrations", "traefik", "file-provider.yml"),
		"--log.level=ERROR", "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false")
	cmd.Env = append(os.Environ(), "KEYCAP_HTTP="+dp.HTTPAddr().String(), "UPSTREAM="+upstream)
	runProxy(t, "traefik", cmd, port)
	// The entry point listens before the file provider's routers are loaded: wait for keycap's
	// refusal instead of Traefik's 404.
	gomega.NewWithT(t).Eventually(func() int {
		return requestVia(t, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+"/reports/x", host, hdr()).status
	}).WithTimeout(proxyStartTimeout).Should(gomega.Equal(http.StatusUnauthorized))
	proxyCases(t, "http://127.0.0.1:"+strconv.Itoa(port), host, ns)
}
