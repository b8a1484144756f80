package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/image"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// imageBuildTimeout bounds the image's build: a static -trimpath build of keycap shares no
// compiled package with buildKeycap's, so cold it compiles everything once more.
const imageBuildTimeout = 20 * time.Minute

// The archive the image tests build, and the keycap binary taken out of it that the install tests
// run: what a cluster runs is what they test.
var (
	imageOnce    sync.Once
	imageArchive string
	imageBinary  string
	imageErr     error
)

// imageDir holds the archive between test runs (bin/ is not checked in).
func imageDir() string { return filepath.Join(testenv.RepoRoot(), "bin", "e2e-image") }

// builtImage builds keycap's image for this machine's platform with internal/image (what `make
// image` runs) once per test run and returns the archive and the binary extracted from it.
func builtImage(t *testing.T) (archive, binary string) {
	t.Helper()
	imageOnce.Do(func() {
		dir := imageDir()
		if imageErr = os.MkdirAll(dir, 0o755); imageErr != nil {
			return
		}
		imageArchive = filepath.Join(dir, "keycap-image.tar")
		if imageErr = buildArchive(imageArchive); imageErr != nil {
			return
		}
		imageBinary = filepath.Join(dir, "keycap")
		imageErr = extractEntrypoint(imageArchive, imageBinary)
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageArchive, imageBinary
}

func buildArchive(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), imageBuildTimeout)
	defer cancel()
	idx, err := image.Build(ctx, image.Options{
		ModuleDir: testenv.RepoRoot(),
		Platforms: []string{"linux/" + runtime.GOARCH},
		Version:   "e2e",
		Revision:  "test",
	})
	if err != nil {
		return err
	}
	return image.WriteArchive(idx, path, "keycap:e2e")
}

// extractEntrypoint writes the image's entrypoint file from the archive's (only) image to out.
func extractEntrypoint(archive, out string) error {
	dir, err := os.MkdirTemp("", "keycap-image-read-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	idx, err := image.ReadArchive(archive, dir)
	if err != nil {
		return err
	}
	imgs, err := image.Images(idx)
	if err != nil {
		return err
	}
	img, ok := imgs["linux/"+runtime.GOARCH]
	if !ok {
		return fmt.Errorf("the archive has no linux/%s image", runtime.GOARCH)
	}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the image has no %s", image.Entrypoint)
		}
		if err != nil {
			return err
		}
		if "/"+strings.TrimPrefix(hdr.Name, "/") != image.Entrypoint {
			continue
		}
		f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		//nolint:gosec // our own image, a bounded file
		if _, err := io.Copy(f, tr); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}
}

// TestImage checks the image `make image` builds, as a container runtime would see it: keycap
// is the entrypoint and the only file, the user is not root, the version labels are set, the
// binary inside runs (statically linked: the image has no libc), a second build is bit for bit
// the same, and the Dockerfile describes the same image.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap")
	}
	g := gomega.NewWithT(t)
	archive, bin := builtImage(t)

	idx, err := image.ReadArchive(archive, t.TempDir())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	manifest, err := idx.IndexManifest()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(manifest.Manifests).To(gomega.HaveLen(1))
	g.Expect(manifest.Manifests[0].Annotations).To(gomega.HaveKeyWithValue("org.opencontainers.image.ref.name", "keycap:e2e"))
	imgs, err := image.Images(idx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	img := imgs["linux/"+runtime.GOARCH]
	g.Expect(img).NotTo(gomega.BeNil())

	cf, err := img.ConfigFile()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cf.Config.Entrypoint).To(gomega.Equal([]string{"/keycap"}))
	g.Expect(cf.Config.Cmd).To(gomega.BeEmpty())
	uid, gid, ok := strings.Cut(cf.Config.User, ":")
	g.Expect(ok).To(gomega.BeTrue(), "user %q is not uid:gid", cf.Config.User)
	for _, id := range []string{uid, gid} {
		n, err := strconv.Atoi(id)
		g.Expect(err).NotTo(gomega.HaveOccurred(), "a numeric user lets runAsNonRoot check it without /etc/passwd")
		g.Expect(n).NotTo(gomega.BeZero(), "the image must not run as root")
	}
	g.Expect(cf.Config.Labels).To(gomega.HaveKeyWithValue("org.opencontainers.image.version", "e2e"))
	g.Expect(cf.Config.Labels).To(gomega.HaveKeyWithValue("org.opencontainers.image.revision", "test"))
	g.Expect(cf.Config.Labels).To(gomega.HaveKeyWithValue("org.opencontainers.image.source", image.Source))

	// keycap alone: no shell, nothing else to exploit.
	var files []string
	tr := tar.NewReader(mutate.Extract(img))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		g.Expect(err).NotTo(gomega.HaveOccurred())
		files = append(files, hdr.Name)
		if hdr.Name == "keycap" {
			g.Expect(hdr.Mode&0o111).NotTo(gomega.BeZero(), "keycap must be executable")
		}
	}
	g.Expect(files).To(gomega.Equal([]string{"keycap"}))

	out, err := exec.Command(bin, "--help").CombinedOutput()
	g.Expect(err).NotTo(gomega.HaveOccurred(), "keycap --help from the image: %s", out)
	g.Expect(string(out)).To(gomega.ContainSubstring("-components"))
	g.Expect(string(out)).To(gomega.ContainSubstring("-metrics-secure"))
	// An empty base has no dynamic loader: the binary must need none.
	exe, err := elf.Open(bin)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = exe.Close() }()
	for _, p := range exe.Progs {
		g.Expect(p.Type).NotTo(gomega.Equal(elf.PT_INTERP), "keycap in the image is dynamically linked")
	}

	// Reproducible: the same sources give the same archive.
	again := filepath.Join(t.TempDir(), "again.tar")
	g.Expect(buildArchive(again)).To(gomega.Succeed())
	g.Expect(fileSHA256(t, again)).To(gomega.Equal(fileSHA256(t, archive)), "two builds of the same sources differ")

	// The Dockerfile builds the same image for docker, podman and buildah users.
	df := dockerfile(t)
	g.Expect(df["FROM"]).To(gomega.HaveSuffix("scratch"), "the final stage has nothing but keycap")
	g.Expect(df["USER"]).To(gomega.Equal(image.User))
	g.Expect(df["ENTRYPOINT"]).To(gomega.Equal(`["` + image.Entrypoint + `"]`))
	g.Expect(df["COPY"]).To(gomega.HaveSuffix(" " + image.Entrypoint))
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

// dockerfile returns the last value of each instruction of the Dockerfile's final stage.
func dockerfile(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			out = map[string]string{}
		}
		out[instr] = strings.TrimSpace(rest)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
