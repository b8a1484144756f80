# keycap — the Makefile vocabulary of kubebuilder. Tools are pinned and installed into ./bin.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
# kustomize v5.8.1: @latest needs a newer Go than 1.26. helm v4 builds from the Go module proxy.
KUSTOMIZE_VERSION ?= v5.8.1
HELM_VERSION ?= v4.3.1
KUSTOMIZE ?= $(LOCALBIN)/kustomize
HELM ?= $(LOCALBIN)/helm
# The kubectl of the deployment targets (the control plane's: PATH=$(hack/build-control-plane.sh):$PATH).
KUBECTL ?= kubectl

# The image `make deploy` and `make image` name; IMG=<registry>/keycap:<tag> or ...@sha256:<digest>.
IMG ?= keycap:dev
# The image's version and revision labels.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# What `make image` builds for; several give a multi-platform index.
PLATFORMS ?= linux/amd64,linux/arm64

# The real kube-apiserver, kube-controller-manager, etcd and kubectl, built from the Go module proxy
# (hack/build-control-plane.sh) and cached outside the repo.
CONTROL_PLANE = $(shell hack/build-control-plane.sh)

# Go test flags; CI may add -v.
TEST_FLAGS ?=
# How long each fuzz target runs in `make test` (short: CI proves the targets still hold).
FUZZTIME ?= 10s
# How long each fuzz target of a parser of outside input runs in `make test`.
PARSER_FUZZTIME ?= 5s

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the markers in api/ and controllers/.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=keycap-manager paths="./controllers/..." paths="./webhook/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=keycap-authz paths="./internal/authz/..." output:rbac:artifacts:config=config/rbac/authz
	$(CONTROLLER_GEN) webhook paths="./webhook/..." output:webhook:artifacts:config=config/webhook
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/chart-files.sh

.PHONY: generate
generate: controller-gen ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## golangci-lint v2 with the explicit linter list of .golangci.yml.
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: manifests generate ## Fail when generated code or manifests are not current.
	@if [ -n "$$(git status --porcelain -- api config)" ]; then \
		echo "generated files are out of date; run 'make manifests generate' and commit:"; \
		git status --porcelain -- api config; git --no-pager diff -- api config | head -50; exit 1; fi
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy; run 'go mod tidy' and commit"; exit 1; }
	go vet ./...

.PHONY: control-plane
control-plane: ## Build (once) the kube-apiserver, kube-controller-manager, etcd and kubectl that tests and `make run` use.
	@hack/build-control-plane.sh

.PHONY: test
test: control-plane kustomize helm ## Unit, envtest and end-to-end tests on a real kube-apiserver + etcd, and brief fuzzing.
	hack/install-test-deps.sh
	KUBEBUILDER_ASSETS="$(CONTROL_PLANE)" go test $(TEST_FLAGS) -count=1 -timeout 30m ./...
	go test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/keys
	# The parsers of outside input live in packages of their own (internal/authz/wire, apptoken,
	# licensefile, plaintext, watchframe), so fuzzing them instruments no client-go,
	# controller-runtime or grpc.
	go test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(PARSER_FUZZTIME) ./internal/authz/wire
	go test -run '^$$' -fuzz '^FuzzParseQuery$$' -fuzztime $(PARSER_FUZZTIME) ./internal/authz/wire
	go test -run '^$$' -fuzz '^FuzzParseActivation$$' -fuzztime $(PARSER_FUZZTIME) ./internal/authz/wire
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(PARSER_FUZZTIME) ./internal/apptoken
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(PARSER_FUZZTIME) ./internal/licensefile
	go test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(PARSER_FUZZTIME) ./internal/session
	go test -run '^$$' -fuzz '^FuzzRoute$$' -fuzztime $(PARSER_FUZZTIME) ./internal/routepolicy
	go test -run '^$$' -fuzz '^FuzzContains$$' -fuzztime $(PARSER_FUZZTIME) ./internal/plaintext
	go test -run '^$$' -fuzz '^FuzzWatchFraming$$' -fuzztime $(PARSER_FUZZTIME) ./internal/authz/watchframe

.PHONY: bench
# Extra flags for hack/bench, e.g. BENCH_ARGS="-max 10000 -before /tmp/keycap-before" (hack/bench/README.md).
BENCH_ARGS ?=

bench: control-plane build ## Load benchmarks against no-op baselines in the same run; prints a table.
	KUBEBUILDER_ASSETS="$(CONTROL_PLANE)" go run ./hack/bench $(BENCH_ARGS)
	KUBEBUILDER_ASSETS="$(CONTROL_PLANE)" go run ./hack/benchwebhook

# How long `make chaos` runs each fuzz target, and extra flags for hack/chaos (e.g. -scenarios 2,6 -keep).
CHAOS_FUZZTIME ?= 15s
CHAOS_ARGS ?=

.PHONY: chaos
chaos: control-plane build ## Fault injection on the real control plane and the built binary, then every fuzz target longer (about 15 minutes); prints a table.
	KUBEBUILDER_ASSETS="$(CONTROL_PLANE)" go run ./hack/chaos -keycap $(LOCALBIN)/keycap -fuzztime $(CHAOS_FUZZTIME) $(CHAOS_ARGS)

##@ Build

.PHONY: build
build: ## Build bin/keycap and the kubectl plugin bin/kubectl-keycap.
	go build -o $(LOCALBIN)/keycap .
	go build -o $(LOCALBIN)/kubectl-keycap ./cmd/kubectl-keycap

# `make run`'s state directory (etcd data, certificates, kubeconfig); kept between runs.
LOCAL_DIR ?= .local
# The local case binds every listener to 127.0.0.1 on DESIGN.md's default ports.
RUN_LOCAL_FLAGS = --local-control-plane=$(LOCAL_DIR) \
	--grpc-bind-address=127.0.0.1:9001 --http-bind-address=127.0.0.1:9002 \
	--webhook-host=127.0.0.1 --webhook-port=9443 \
	--metrics-bind-address=127.0.0.1:8080 --health-probe-bind-address=127.0.0.1:8081
# Extra flags for bin/keycap, e.g. RUN_ARGS=--zap-devel.
RUN_ARGS ?=

.PHONY: run
run: build ## Run keycap on an embedded local control plane (state in .local/), or with `make run KUBECONFIG=...` on that cluster.
# exec: keycap replaces the shell, so SIGINT/SIGTERM reach it and it stops etcd and the apiserver.
ifeq ($(origin KUBECONFIG),command line)
	exec $(LOCALBIN)/keycap --kubeconfig="$(KUBECONFIG)" $(RUN_ARGS)
else
	@hack/build-control-plane.sh >/dev/null
	export KUBEBUILDER_ASSETS="$(CONTROL_PLANE)"; exec $(LOCALBIN)/keycap $(RUN_LOCAL_FLAGS) $(RUN_ARGS)
endif

.PHONY: image
image: ## Build the image without a container engine into the OCI archive bin/keycap-image.tar (IMG names it).
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) go run ./hack/image \
		-out $(LOCALBIN)/keycap-image.tar -tag $(IMG) -platforms $(PLATFORMS) -version $(VERSION) -revision $(REVISION)

.PHONY: image-push
image-push: ## Build the image and push it to IMG (credentials of docker login), no container engine needed.
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) go run ./hack/image \
		-out $(LOCALBIN)/keycap-image.tar -tag $(IMG) -push $(IMG) -platforms $(PLATFORMS) -version $(VERSION) -revision $(REVISION)

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of ~/.kube/config (or KUBECONFIG).
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRDs, and with them every keycap object; ignore-not-found=true to ignore missing ones.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy config/default with the image IMG.
# In a throwaway overlay, so the checked-in config/manager keeps its image (config/manager maps
# the manifests' "controller" to "keycap", which the overlay maps to IMG).
	@mkdir -p $(CURDIR)/bin && dir=$$(mktemp -d $(CURDIR)/bin/deploy.XXXXXX) && trap 'rm -rf "$$dir"' EXIT && cd "$$dir" && \
		$(KUSTOMIZE) create --resources ../../config/default && \
		$(KUSTOMIZE) edit set image keycap=$(IMG) && \
		$(KUSTOMIZE) build . | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove what deploy applied (the CRDs too); ignore-not-found=true to ignore missing ones.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: helm-lint
helm-lint: helm ## helm lint and helm template the chart (make test does more: internal/e2e's chart tests).
	$(HELM) lint --strict config/charts/keycap
	$(HELM) template keycap config/charts/keycap --namespace keycap-system >/dev/null

##@ Tools

# Each tool is installed as bin/<tool>-<version> with bin/<tool> a link to it, and the link is
# checked on every use: changing a pinned version installs that version (a plain file target
# would keep an old binary for as long as bin/<tool> exists).
# $(call go-install-tool,bin/tool,package,version)
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$$(basename -- "$(1)-$(3)")" ] || { \
	set -e; \
	echo "installing $(2)@$(3) into $(LOCALBIN)"; \
	rm -f "$(1)"; \
	GOBIN="$(LOCALBIN)" go install "$(2)@$(3)"; \
	mv "$(1)" "$(1)-$(3)"; \
	ln -sf "$$(basename -- "$(1)-$(3)")" "$(1)"; \
}
endef

.PHONY: controller-gen
controller-gen:
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_GEN_VERSION))

.PHONY: kustomize
kustomize:
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: helm
helm:
	$(call go-install-tool,$(HELM),helm.sh/helm/v4/cmd/helm,$(HELM_VERSION))

.PHONY: golangci-lint
golangci-lint:
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))
