# The commands the README shows. `.ci/run` calls the same targets.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
CONFORMANCE_REQUIREMENTS := crates/gcp-emulator/tests/conformance/requirements.txt
# The real LiteLLM proxy that live revisions run (docs/getting-started.md, "The real proxy"). Pinned: a version whose `proxy` extra installs.
LITELLM_VERSION := 1.80.5
LITELLM_VENV := .venv-litellm

.PHONY: help test lint fmt generate venv litellm control-plane helm promtool demo deny image

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

test: venv litellm control-plane helm promtool ## Run every test: unit, emulator conformance (gcloud, Python, Rust clients), real kube-apiserver, helm
	$(CARGO) build -p litellm-operator -p litellm-operator-tests --bins
	$(CARGO) test --workspace --all-targets

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

generate: ## Regenerate the committed CRD and its reference docs from crates/api
	$(CARGO) run -q -p litellm-operator -- crd > crds/litellmdeployments.yaml
	$(CARGO) run -q -p litellm-operator -- crd --reference > docs/crd-reference.md
	cp crds/litellmdeployments.yaml charts/litellm-operator/files/crds/litellmdeployments.yaml

venv: $(VENV)/.installed ## Python virtualenv with Google's client libraries (for conformance tests)

$(VENV)/.installed: $(CONFORMANCE_REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CONFORMANCE_REQUIREMENTS)
	touch $@

litellm: $(LITELLM_VENV)/.installed-$(LITELLM_VERSION) ## Virtualenv (cached) with the real LiteLLM proxy, run by live Cloud Run revisions

$(LITELLM_VENV)/.installed-$(LITELLM_VERSION):
	rm -rf $(LITELLM_VENV)
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --disable-pip-version-check 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

control-plane: ## Build (once, cached) the real kube-apiserver, etcd and kubectl from their Go modules
	bash tests/control-plane/build.sh

helm: ## Build (once, cached) the real helm CLI from its Go module
	bash tests/helm/build.sh

promtool: ## Build (once, cached) Prometheus' promtool from its Go module (checks the chart's alerts)
	bash tests/promtool/build.sh

demo: control-plane litellm ## The operator's main job locally: real kube-apiserver + etcd, the emulator, the example stack
	$(CARGO) build -q -p litellm-operator -p litellm-operator-tests --bins
	$(CARGO) run -q -p litellm-operator-tests --bin demo

image: ## Build the OCI image without a container engine (static binary, crane): target/image/oci and .tar
	bash image/build.sh

deny: ## License, source and ban checks (needs cargo-deny)
	$(CARGO) deny --offline check licenses bans sources
