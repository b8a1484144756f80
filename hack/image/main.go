// Command image builds keycap's container image without a container engine (what `make image`
// runs): an OCI archive, and with -push the same image in a registry.
//
//	go run ./hack/image -out bin/keycap-image.tar -tag keycap:v0.1.0 -platforms linux/amd64,linux/arm64
//	go run ./hack/image -push registry.example.com/keycap:v0.1.0
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keycap-dev/keycap/internal/image"
)

func main() {
	out := flag.String("out", "bin/keycap-image.tar", "The OCI archive to write; empty writes none.")
	tag := flag.String("tag", "keycap:dev", "The name the archive gives the image (org.opencontainers.image.ref.name).")
	push := flag.String("push", "", "Also push the image to this reference (registry/repository:tag), with the credentials of docker login.")
	platforms := flag.String("platforms", "linux/amd64", "Comma-separated os/arch to build for; several make a multi-platform index.")
	version := flag.String("version", "dev", "The org.opencontainers.image.version label.")
	revision := flag.String("revision", "unknown", "The org.opencontainers.image.revision label (the git commit).")
	flag.Parse()

	if err := run(*out, *tag, *push, *platforms, *version, *revision); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(out, tag, push, platforms, version, revision string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	created, err := sourceDate()
	if err != nil {
		return err
	}
	moduleDir, err := os.Getwd()
	if err != nil {
		return err
	}
	idx, err := image.Build(ctx, image.Options{
		ModuleDir: moduleDir,
		Platforms: strings.Split(platforms, ","),
		Version:   version,
		Revision:  revision,
		Created:   created,
	})
	if err != nil {
		return err
	}
	if out != "" {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := image.WriteArchive(idx, out, tag); err != nil {
			return err
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("wrote %s (%s, index %s)\n", out, platforms, d)
	}
	if push != "" {
		ref, err := image.Push(ctx, idx, push)
		if err != nil {
			return err
		}
		fmt.Println("pushed", ref)
	}
	return nil
}

// sourceDate is $SOURCE_DATE_EPOCH (reproducible-builds.org), or the epoch.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(sec, 0), nil
}
