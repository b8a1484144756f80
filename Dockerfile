# keycap's image: one static binary on an empty base, run as a non-root user, no shell.
#
#   docker build -t <registry>/keycap:<tag> --build-arg VERSION=<tag> --build-arg REVISION=$(git rev-parse HEAD) .
#
# `make image` builds the same image without a container engine (internal/image, OCI archive in
# bin/); keep the two in step (internal/e2e's image test compares USER and ENTRYPOINT).

# The build stage runs on the builder's platform and cross-compiles for the target's.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w -buildid=" -o /out/keycap .

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="keycap" \
      org.opencontainers.image.description="Credentials as Kubernetes objects: operator, validating webhook and ext_authz data plane" \
      org.opencontainers.image.source="https://github.com/keycap-dev/keycap" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION"
COPY --from=build --chmod=0555 /out/keycap /keycap
# 65532 is the conventional "nonroot" user of distroless images; numeric, so Kubernetes'
# runAsNonRoot can verify it without an /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/keycap"]
