# Sublet build and test entry points. `make help` lists them.

GO          ?= go
BIN         ?= bin/sublet
KUBE_VERSION := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
KUBE_MINOR  := $(word 2,$(subst ., ,$(KUBE_VERSION)))
VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
LDFLAGS     := -s -w $(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean)
# Static binary: kine's SQLite driver is then the pure-Go one. Builds, vet and
# tests share these settings so they share one build cache.
export CGO_ENABLED ?= 0
export GOFLAGS += -trimpath

.PHONY: help build image test test-unit lint codegen demo bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/sublet
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sublet

# The image: version shared with the charts (their appVersion), labels and
# timestamps from the commit, so two builds of one commit are identical.
IMAGE_VERSION ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/vcluster/Chart.yaml)
IMAGE_REPO    ?= ghcr.io/sublet-dev/sublet
IMAGE_ARCHIVE ?= bin/sublet-image.tar
GIT_REVISION  := $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

image: build ## write the sublet image as an OCI archive, bin/sublet-image.tar (no Docker needed)
	$(GO) run ./internal/image/cmd/build-image --binary $(BIN) --version $(IMAGE_VERSION) \
		--tag '$(IMAGE_REPO):$(IMAGE_VERSION)' --revision '$(GIT_REVISION)' --created '$(SOURCE_DATE_EPOCH)' --output '$(IMAGE_ARCHIVE)'

# Packages whose concurrency matters run again under the race detector.
RACE_PKGS := ./internal/syncer/... ./internal/translate/... ./internal/pki/... ./internal/supervisor/... ./internal/component/...

test: build lint ## run the whole test suite: lint, unit and end-to-end tests
	SUBLET_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 40m ./...
	SUBLET_BIN=$(abspath $(BIN)) CGO_ENABLED=1 $(GO) test -count=1 -race $(RACE_PKGS)

test-unit: ## run the tests that need no cluster
	$(GO) test -count=1 -short ./...

lint: ## gofmt, go vet, and generated files (API, chart RBAC) up to date
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	hack/verify-codegen.sh
	hack/verify-chart-crds.sh
	hack/verify-rbac.sh

codegen: ## regenerate deepcopy functions and CRDs from api/ (controller-gen), the chart's RBAC from the syncer's kinds
	hack/update-codegen.sh
	hack/update-rbac.sh

demo: build ## bring up the whole platform locally (host, agent, server) with a demo virtual cluster; state in .sublet
	$(BIN) up --state-dir .sublet

bench: build ## measure start time, memory and build figures (see bench/README.md)
	SUBLET_BIN=$(abspath $(BIN)) bash bench/run.sh

clean:
	rm -rf bin
