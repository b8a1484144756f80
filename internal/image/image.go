// Package image builds keycap's container image without a container engine: the static binary
// on an empty base, run as a non-root user, the same image the Dockerfile describes. The result is
// an OCI image layout in a tar file (an "OCI archive": podman load, skopeo copy oci-archive:,
// crane push) or a push to a registry.
//
// The build is reproducible: the binary is built with -trimpath and no build ID or VCS stamp,
// every file in the layer and the archive has the same fixed time (SOURCE_DATE_EPOCH, or the Unix
// epoch), so the same sources give the same digests on any machine.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is; the Dockerfile says the same.
const (
	// Entrypoint is the binary's path in the image.
	Entrypoint = "/keycap"
	// User is the numeric uid:gid the container runs as (distroless' "nonroot"), so that
	// runAsNonRoot can check it without an /etc/passwd.
	User = "65532:65532"
	// Source is the org.opencontainers.image.source label.
	Source = "https://github.com/keycap-dev/keycap"
)

// Options say what to build.
type Options struct {
	// ModuleDir is the root of the keycap module (where main.go is).
	ModuleDir string
	// Platforms are os/arch pairs such as linux/amd64; one gives an image, several an index.
	Platforms []string
	// Version and Revision become the org.opencontainers.image.version and .revision labels.
	Version, Revision string
	// Created is the time of every file and of the image (reproducibility); zero means the epoch.
	Created time.Time
	// WorkDir holds the binaries built on the way; a temporary directory when empty.
	WorkDir string
}

// Labels returns the image's labels for o.
func (o Options) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "keycap",
		"org.opencontainers.image.description": "Credentials as Kubernetes objects: operator, validating webhook and ext_authz data plane",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
}

// Build builds the binary for every platform and returns the image index holding one image each.
func Build(ctx context.Context, o Options) (v1.ImageIndex, error) {
	if len(o.Platforms) == 0 {
		return nil, errors.New("image: no platform to build for")
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "keycap-image-")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		o.WorkDir = dir
	}
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, p := range o.Platforms {
		platform, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("image: platform %q: %w", p, err)
		}
		bin := filepath.Join(o.WorkDir, "keycap-"+platform.OS+"-"+platform.Architecture+platform.Variant)
		if err := buildBinary(ctx, o.ModuleDir, platform, bin); err != nil {
			return nil, err
		}
		img, err := imageOf(bin, platform, o)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: platform},
		})
	}
	return idx, nil
}

// buildBinary cross-compiles keycap statically and reproducibly.
func buildBinary(ctx context.Context, moduleDir string, p *v1.Platform, out string) error {
	//nolint:gosec // G204: builds this module; out is the caller's work directory
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = moduleDir
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && strings.HasPrefix(p.Variant, "v") {
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image: go build for %s: %w: %s", p, err, stderr.String())
	}
	return nil
}

// imageOf puts bin at Entrypoint in a one-layer image for platform p.
func imageOf(bin string, p *v1.Platform, o Options) (v1.Image, error) {
	data, err := os.ReadFile(bin) //nolint:gosec // G304: the binary buildBinary just wrote
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(Entrypoint, "/"),
		Mode:     0o555,
		Size:     int64(len(data)),
		ModTime:  o.Created,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: o.Created},
		CreatedBy: "internal/image: keycap static binary at " + Entrypoint,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = o.Labels()
	return mutate.ConfigFile(img, cf)
}

// WriteArchive writes idx as an OCI image layout in a tar file at path, with ref (e.g.
// keycap:v0.1.0) as the org.opencontainers.image.ref.name of every manifest, so that
// `podman load` or `skopeo copy oci-archive:` name it.
func WriteArchive(idx v1.ImageIndex, path, ref string) error {
	dir, err := os.MkdirTemp("", "keycap-oci-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var annotations map[string]string
	if ref != "" {
		annotations = map[string]string{"org.opencontainers.image.ref.name": ref}
	}
	// One platform: the image itself is the entry of index.json, which every tool accepts;
	// several: the index is.
	if len(manifest.Manifests) == 1 {
		img, err := idx.Image(manifest.Manifests[0].Digest)
		if err != nil {
			return err
		}
		err = lp.AppendImage(img, layout.WithAnnotations(annotations), layout.WithPlatform(*manifest.Manifests[0].Platform))
		if err != nil {
			return err
		}
	} else if err := lp.AppendIndex(idx, layout.WithAnnotations(annotations)); err != nil {
		return err
	}
	return tarDir(dir, path)
}

// tarDir writes the files under dir into a tar at path, sorted, with fixed times and owners.
func tarDir(dir, path string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	tmp := path + ".tmp"
	f, err := os.Create(tmp) //nolint:gosec // G304: the archive the caller asked for
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range files {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p) //nolint:gosec // G304: a file layout.Write wrote under dir
		if err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadArchive opens an archive WriteArchive wrote, unpacking it into dir.
func ReadArchive(path, dir string) (v1.ImageIndex, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the archive the caller names
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			return nil, fmt.Errorf("image: archive entry %q leaves the directory", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			return nil, err
		}
		out, err := os.Create(target) //nolint:gosec // G304: checked above to stay under dir
		if err != nil {
			return nil, err
		}
		//nolint:gosec // the archive is one this package wrote; its size is bounded by the image
		if _, err := io.Copy(out, tr); err != nil {
			_ = out.Close()
			return nil, err
		}
		if err := out.Close(); err != nil {
			return nil, err
		}
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	return lp.ImageIndex()
}

// Images returns the images an archive's index.json names, by platform ("linux/amd64"),
// looking through a nested index.
func Images(idx v1.ImageIndex) (map[string]v1.Image, error) {
	out := map[string]v1.Image{}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range manifest.Manifests {
		switch {
		case d.MediaType.IsIndex():
			inner, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			more, err := Images(inner)
			if err != nil {
				return nil, err
			}
			for k, v := range more {
				out[k] = v
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return nil, err
			}
			out[cf.Platform().String()] = img
		}
	}
	return out, nil
}

// Push writes idx to the registry at ref with the credentials of ~/.docker/config.json (or
// $DOCKER_CONFIG), as docker, podman and crane log in; a single-platform index is pushed as the
// image itself.
func Push(ctx context.Context, idx v1.ImageIndex, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}
	if len(manifest.Manifests) == 1 {
		img, err := idx.Image(manifest.Manifests[0].Digest)
		if err != nil {
			return "", err
		}
		if err := remote.Write(r, img, opts...); err != nil {
			return "", err
		}
		d, err := img.Digest()
		return r.Context().Digest(d.String()).String(), err
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		return "", err
	}
	d, err := idx.Digest()
	return r.Context().Digest(d.String()).String(), err
}
