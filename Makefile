# Every command a user runs; see README.md. Each target installs what it needs first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
# The pinned cdktn-cli (CDK Terrain) and the Node.js 22 it runs on (jsii warns on every run under Node 20).
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
# No update checks or telemetry from HashiCorp's tools.
export CHECKPOINT_DISABLE := 1
CDKTN := node_modules/.bin/cdktn
# The binary cdktn runs: terraform, or TERRAFORM_BINARY_NAME=tofu for OpenTofu. Both cdktn-cli and
# the app read it (a synth of the bootstrap's terraform_data checks the binary's version), so every
# target below that runs cdktn or the app passes it on; cdktf.json's targetVersions says which.
TERRAFORM_BINARY_NAME ?= terraform
export TERRAFORM_BINARY_NAME
HOST ?= 127.0.0.1
PORT ?= 5000
MODEL := artifacts/model.onnx
SPACE := $(subst ,, )
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Every virtualenv installs each package, transitive ones too, at the version the tests ran with.
LOCKED := -c requirements-dev.lock
# The serving stack (settings.STACK_NAME) and the one that prepares a new project for it.
SERVING_STACK := secure-inference
BOOTSTRAP_STACK := bootstrap
# `make synth` writes both stacks; STACK=bootstrap or STACK=secure-inference writes one.
STACK ?= all
SEED_CURL := curl -X POST http://localhost:$(PORT)/inference/ -H 'Content-Type: application/json' \
	-d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'

.PHONY: help run run-port-free test lock train train-job export upload publish bootstrap synth synth-hcl deploy destroy check-ip endpoint verify bench debian-deps docs docs-serve diagram cost refresh-cloud-ranges allowlist-diff

help:
	@echo "make run     train if needed, then serve predict on http://$(HOST):$(PORT)"
	@echo "make test    install everything the tests need and run them"
	@echo "make train   train the iris model and write $(MODEL)"
	@echo "make export ESTIMATOR=fitted.joblib SAMPLE=rows.csv NAME=name [OUT=$(MODEL)] [EXAMPLE_ROW=1]"
	@echo "             your fitted estimator or pipeline -> ONNX, checked against scikit-learn first"
	@echo "make upload  copy $(MODEL) to MODEL_URI (gs://bucket/object)"
	@echo "make publish upload $(MODEL) (or MODEL=...) to gs://\$$MODEL_BUCKET/models/<name>/<version>/, never overwriting"
	@echo "make train-job  run the deployed training job once now (PROJECT_ID, REGION) and wait for its verdict"
	@echo "make bootstrap  APIs, buckets, image repository and build account on a new project"
	@echo "make synth   cdktn synth: cdktf.out/stacks/{$(BOOTSTRAP_STACK),$(SERVING_STACK)}/cdk.tf.json"
	@echo "make synth-hcl  the same stacks as Terraform HCL: cdktf.out/stacks/*/cdk.tf"
	@echo "make deploy  cdktn deploy $(SERVING_STACK) (needs Google Cloud credentials)"
	@echo "make destroy cdktn destroy $(SERVING_STACK); the bootstrap stays"
	@echo "make check-ip IP=a.b.c.d  which Cloud Armor rule of the synthesized policy an address hits"
	@echo "             (python cdktf/ops.py check-ip a.b.c.d exits 1 when one is denied, for scripts)"
	@echo "make endpoint  the deployed addresses, URL, DNS records and curl commands"
	@echo "make verify    compare the live policy and every way to the service with the code"
	@echo "make allowlist-diff [BASE=old.toml] [LOGS=export.json]  whose access the allowlist change cuts or opens"
	@echo "make refresh-cloud-ranges [AZURE=ServiceTags_Public_<date>.json]  fresh cloud range snapshots"
	@echo "make bench     the serving benchmark; writes bench/results/latest.{json,md,png}"
	@echo "make cost [REQUESTS=...]  itemised monthly cost of the endpoint (default 1 and 100 million requests)"
	@echo "make diagram [DIAGRAM=$(DIAGRAM)]  the picture of the synthesized serving stack: .dot and .svg"
	@echo "make docs      build the documentation site into site/ (offline; warnings are errors)"
	@echo "make docs-serve  serve site/ on http://127.0.0.1:$(DOCS_PORT)"
	@echo "make lock      after changing a requirements file: pin what it pulls in (requirements*.lock)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Debian packages the tests and the benchmark use: curl runs the seed's own request, wrk is the
# load generator, taskset (util-linux) pins server and load to separate cores, chromium opens the
# service's /docs and the docs site, dot (graphviz) draws the picture of the stack.
DEBIAN_PACKAGES := curl wrk taskset chromium dot
# Another apt (an unattended upgrade, a second `make test`) may hold the package locks: wait for
# them, up to APT_LOCK_WAIT seconds, rather than fail. apt-get install waits by itself with
# DPkg::Lock::Timeout; apt-get update does not wait for the lists' lock, so it is retried.
APT_LOCK_WAIT ?= 300
APT_RETRY_PAUSE ?= 5
debian-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$(echo $$p | sed -e 's/^taskset$$/util-linux/' -e 's/^dot$$/graphviz/')"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		apt_get="$$SUDO apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT)"; \
		waited=0; \
		until out=$$($$apt_get update -qq 2>&1); do \
			if ! echo "$$out" | grep -qi "lock" || [ $$waited -ge $(APT_LOCK_WAIT) ]; then echo "$$out" >&2; exit 1; fi; \
			echo "apt-get update: the package lists are locked by another process; waiting"; \
			sleep $(APT_RETRY_PAUSE); waited=$$((waited + $(APT_RETRY_PAUSE))); \
		done; \
		$$apt_get install -y -qq --no-install-recommends $$missing; \
	fi

# Stamps: reinstall only when a requirements file changes.
$(VENV)/.serve-deps: requirements.txt requirements-dev.lock requirements-train.txt | $(BIN)/python
	$(PIP) -r requirements-train.txt $(LOCKED)
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.lock requirements-train.txt requirements-infra.txt requirements-docs.txt requirements-dev.txt | $(BIN)/python
	$(PIP) -r requirements-dev.txt $(LOCKED)
	touch $@

$(VENV)/.docs-deps: requirements-docs.txt requirements-dev.lock | $(BIN)/python
	$(PIP) -r requirements-docs.txt $(LOCKED)
	touch $@

$(VENV)/.infra-deps: requirements-infra.txt requirements-dev.lock | $(BIN)/python
	$(PIP) -r requirements-infra.txt $(LOCKED)
	touch $@

# After a change to any requirements file: resolve what the tests install, unconstrained, in a fresh
# virtualenv, and lock it all, and apart the part that requirements.txt pulls in for the image (the
# training side's pins, such as protobuf's, hold for the image too: it is the set the tests run).
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(LOCK_VENV)/bin/python -m tools.serving_lock --write
	rm -rf $(LOCK_VENV)

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(MODEL): | $(VENV)/.serve-deps
	$(BIN)/python -m training.train --output $@

train: $(VENV)/.serve-deps
	$(BIN)/python -m training.train --output $(MODEL)

OUT ?= $(MODEL)
EXPORT_MISSING = $(foreach variable,ESTIMATOR SAMPLE NAME,$(if $($(variable)),,$(variable)))
export: $(VENV)/.serve-deps
	@if [ -n "$(strip $(EXPORT_MISSING))" ]; then \
		echo "make export: set $(strip $(EXPORT_MISSING)), e.g. make export ESTIMATOR=model.joblib SAMPLE=rows.csv NAME=churn" >&2; \
		exit 2; fi
	$(BIN)/python -m training.export --estimator "$(ESTIMATOR)" --sample "$(SAMPLE)" --out "$(OUT)" \
		--name "$(NAME)" $(if $(filter 1 true yes,$(EXAMPLE_ROW)),--example-row) \
		$(foreach type,$(TRUST),--trust "$(type)")

# Settings are checked first, before anything slow installs or trains and before cdktn starts
# (which would print the app's error twice, inside its own): one line naming the bad setting.
settings-upload: | $(BIN)/python
	$(call refuse_bad_settings,$(BIN)/python -m training.upload --check --to "$(MODEL_URI)")

settings-%: | $(BIN)/python
	$(call refuse_bad_settings,$(BIN)/python cdktf/main.py --check $*)

# The check prints one `error: …` line per bad setting. $(shell) would join them with spaces, so
# they come back joined by RS (\036, never in a message: values are quoted with repr) and reach
# $(error) one a line.
RS := $(shell printf '\036')
define newline


endef
refuse_bad_settings = $(call refuse,$(subst $(RS),$(newline),$(shell env $(command_line_variables) $(1) 2>&1 >/dev/null | sed 's/^error: //' | paste -s -d '$(RS)')))
# GNU make before 4.4 starts $(shell …) in the environment make itself started in, without the
# variables given on its command line: each is passed on, single-quoted for the shell.
command_line_variables = $(foreach name,$(.VARIABLES),$(if $(findstring command line,$(origin $(name))),$(name)='$(subst ','\'',$($(name)))'))
refuse = $(if $(1),$(error $(1)))

upload: settings-upload $(VENV)/.serve-deps $(MODEL)
	$(BIN)/python -m training.upload --source $(MODEL) --to "$(MODEL_URI)"

# No $(MODEL) prerequisite: publishing never trains a model behind the user's back.
publish: $(VENV)/.serve-deps
	MODEL_BUCKET="$(MODEL_BUCKET)" $(BIN)/python -m training.publish "$(MODEL)"

# One execution of the deployed training job (`python -m training.job` on Cloud Run), now:
# exit 0 published, 3 refused by the quality gate, 1 failed, 2 not started or not followed.
train-job: $(VENV)/.serve-deps $(VENV)/.infra-deps
	PROJECT_ID="$(PROJECT_ID)" REGION="$(REGION)" $(BIN)/python -m training.run_job

# Before anything is installed or trained: a port that cannot be listened on is reported with the
# setting that changes it (functions-framework would retry for 5 s, then print a connection error).
define PORT_CHECK
import socket, sys
host, port = sys.argv[1], sys.argv[2]
if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
    sys.exit(f"PORT: expected a port number from 1 to 65535, got {port!r}")
try:
    family, kind, proto, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
except OSError as error:
    sys.exit(f"HOST: cannot listen on {host}:{port}: {error}")
with socket.socket(family, kind, proto) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
    try:
        sock.bind(address)
    except OSError as error:
        sys.exit(f"cannot listen on {host}:{port}: {error.strerror}; "
                 f"choose another port with `make run PORT=...` (PORT={port} now)")
endef
export PORT_CHECK

run-port-free:
	@$(PYTHON) -c "$$PORT_CHECK" '$(HOST)' '$(PORT)'

# With MODEL_URI set, the user's own model is served: nothing to train, and the request to try is
# built from that model's own metadata (its example row, or typed placeholders without one).
run: run-port-free $(VENV)/.serve-deps $(if $(MODEL_URI),,$(MODEL))
	@echo "Serving predict on http://$(HOST):$(PORT) (Ctrl-C stops). In another terminal:"
	@$(if $(MODEL_URI),printf '  %s\n' "$$($(BIN)/python -m function.curl_example --port $(PORT) "$(MODEL_URI)")",echo "  $(SEED_CURL)")
	@echo "Its API, with a form to try it: http://localhost:$(PORT)/docs"
	exec $(BIN)/python -m function.server --host=$(HOST) --port=$(PORT)

# cdktn runs the app for every command without saying which stack it is for: STACK tells it.
# --migrate-state: once BOOTSTRAP_STATE_IN_BUCKET is set, the local state moves to the bucket.
bootstrap: settings-$(BOOTSTRAP_STACK) $(VENV)/.infra-deps node_modules/.installed
	STACK=$(BOOTSTRAP_STACK) $(CDKTN) deploy $(BOOTSTRAP_STACK) --migrate-state

synth: settings-$(STACK) $(VENV)/.infra-deps node_modules/.installed
	$(BIN)/python cdktf/allowlist_ops.py warnings
	STACK=$(STACK) $(CDKTN) synth

synth-hcl: settings-$(STACK) $(VENV)/.infra-deps node_modules/.installed
	STACK=$(STACK) $(CDKTN) synth --hcl

# With two stacks in the app, cdktn refuses a deploy or destroy that names none.
deploy: settings-$(SERVING_STACK) $(VENV)/.infra-deps node_modules/.installed
	$(BIN)/python cdktf/allowlist_ops.py warnings
	STACK=$(SERVING_STACK) $(CDKTN) deploy $(SERVING_STACK)

# An expired ALLOWLIST_FILE entry blocks synth and deploy, never tearing the endpoint down:
# STACK_COMMAND=destroy tells the settings check and the app (which cdktn runs) what is being done.
settings-destroy: | $(BIN)/python
	$(call refuse_bad_settings,STACK_COMMAND=destroy $(BIN)/python cdktf/main.py --check $(SERVING_STACK))

destroy: settings-destroy $(VENV)/.infra-deps node_modules/.installed
	STACK_COMMAND=destroy STACK=$(SERVING_STACK) $(CDKTN) destroy $(SERVING_STACK)

# A denied address is an answer, not a failure: make exits 0 once the verdict is printed.
# Scripts that need the verdict as a status run `python cdktf/ops.py check-ip`, which exits 1 for
# a denied address; 2 (a bad address, no policy) stops make here too.
CHECK_IP_DENIED := 1
# Where cdktn synth writes (cdktf.json's default); check-ip reads the policy there.
CDKTF_OUT ?= cdktf.out
check-ip: $(VENV)/.infra-deps node_modules/.installed
	@STACK=$(SERVING_STACK) $(BIN)/python cdktf/ops.py --out "$(CDKTF_OUT)" check-ip $(IP) || [ $$? -eq $(CHECK_IP_DENIED) ]

endpoint verify: $(VENV)/.infra-deps
	$(BIN)/python cdktf/ops.py $@

# The docs' example settings: `make diagram` and `make cost` use them when none of the three is set.
EXAMPLE_SETTINGS := PROJECT_ID=my-project MODEL_URI=gs://my-models/iris/model.onnx ALLOWED_IP_RANGES=203.0.113.4
OWN_SETTINGS = $(strip $(PROJECT_ID)$(MODEL_URI)$(ALLOWED_IP_RANGES))
# Synthesizes the serving stack with the user's settings (checked first), or the docs' example ones.
synth-for-docs = $(if $(OWN_SETTINGS),$(call refuse_bad_settings,$(BIN)/python cdktf/main.py --check $(SERVING_STACK)),) \
	$(if $(OWN_SETTINGS),,env $(EXAMPLE_SETTINGS)) STACK=$(SERVING_STACK) $(CDKTN) synth >/dev/null

# The picture of the request path, drawn from the synthesized JSON. With the example settings it
# is docs/diagram.{dot,svg}, the picture the docs show; with your own, cdktf.out/diagram.{dot,svg}.
DIAGRAM ?= $(if $(OWN_SETTINGS),cdktf.out/diagram,docs/diagram)
diagram: $(VENV)/.infra-deps node_modules/.installed debian-deps
	$(synth-for-docs)
	PYTHONPATH=cdktf $(BIN)/python -m secure_endpoint.diagram cdktf.out/stacks/$(SERVING_STACK)/cdk.tf.json --out $(DIAGRAM).dot
	dot -Tsvg $(DIAGRAM).dot -o $(DIAGRAM).svg
	@echo "wrote $(DIAGRAM).dot and $(DIAGRAM).svg"

# The monthly cost of what the code synthesizes, from the dated price table.
REQUESTS ?=
cost: $(VENV)/.infra-deps node_modules/.installed
	$(synth-for-docs)
	PYTHONPATH=cdktf $(BIN)/python -m secure_endpoint.cost $(REQUESTS)

DOCS_PORT ?= 8000
docs: $(VENV)/.docs-deps
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs site

docs-serve: docs
	$(BIN)/python -m http.server $(DOCS_PORT) --bind 127.0.0.1 --directory site

# What the working tree's allowlist changes against the live policy (or BASE=earlier.toml); with
# LOGS=export.json (or .jsonl, maybe .gz), for every client in the load balancer's request logs.
allowlist-diff: $(VENV)/.infra-deps
	$(BIN)/python cdktf/allowlist_ops.py diff $(if $(BASE),--base "$(BASE)") $(if $(LOGS),--logs "$(LOGS)")

# Google's and AWS's files are downloaded; Azure's has no stable URL: AZURE=ServiceTags_Public_<date>.json.
refresh-cloud-ranges: | $(BIN)/python
	$(BIN)/python cdktf/allowlist_ops.py refresh-cloud-ranges $(if $(AZURE),--azure "$(AZURE)")

bench: $(VENV)/.dev-deps debian-deps
	$(BIN)/python -m bench.run

test: $(VENV)/.dev-deps debian-deps node_modules/.installed $(CHECKOV_VENV)/.installed
	$(BIN)/python -m pytest
