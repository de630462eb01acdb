# Every command a user runs; see README.md. Each target installs what it needs first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
# The pinned cdktf-cli and the Node.js 22 it runs on (jsii warns on every run under Node 20).
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
# No update checks or telemetry from HashiCorp's tools.
export CHECKPOINT_DISABLE := 1
CDKTF := node_modules/.bin/cdktf
HOST ?= 127.0.0.1
PORT ?= 5000
MODEL := artifacts/model.onnx
SPACE := $(subst ,, )
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# The serving stack (settings.STACK_NAME) and the one that prepares a new project for it.
SERVING_STACK := secure-inference
BOOTSTRAP_STACK := bootstrap
# `make synth` writes both stacks; STACK=bootstrap or STACK=secure-inference writes one.
STACK ?= all
SEED_CURL := curl -X POST http://localhost:$(PORT)/inference/ -H 'Content-Type: application/json' \
	-d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'

.PHONY: help run run-port-free test train export upload publish bootstrap synth synth-hcl deploy destroy check-ip endpoint verify bench debian-deps

help:
	@echo "make run     train if needed, then serve predict on http://$(HOST):$(PORT)"
	@echo "make test    install everything the tests need and run them"
	@echo "make train   train the iris model and write $(MODEL)"
	@echo "make export ESTIMATOR=fitted.joblib SAMPLE=rows.csv NAME=name [OUT=$(MODEL)] [EXAMPLE_ROW=1]"
	@echo "             your fitted estimator or pipeline -> ONNX, checked against scikit-learn first"
	@echo "make upload  copy $(MODEL) to MODEL_URI (gs://bucket/object)"
	@echo "make publish upload $(MODEL) (or MODEL=...) to gs://\$$MODEL_BUCKET/models/<name>/<version>/, never overwriting"
	@echo "make bootstrap  APIs, buckets, image repository and build account on a new project"
	@echo "make synth   cdktf synth: cdktf.out/stacks/{$(BOOTSTRAP_STACK),$(SERVING_STACK)}/cdk.tf.json"
	@echo "make deploy  cdktf deploy $(SERVING_STACK) (needs Google Cloud credentials)"
	@echo "make destroy cdktf destroy $(SERVING_STACK); the bootstrap stays"
	@echo "make check-ip IP=a.b.c.d  which Cloud Armor rule of the synthesized policy an address hits"
	@echo "make endpoint  the deployed addresses, URL, DNS records and curl commands"
	@echo "make verify    compare the live policy and every way to the service with the code"
	@echo "make bench     the serving benchmark; writes bench/results/latest.{json,md,png}"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Debian packages the tests and the benchmark use: curl runs the seed's own request, wrk is the
# load generator, taskset (util-linux) pins server and load to separate cores.
DEBIAN_PACKAGES := curl wrk taskset chromium
# Another apt (an unattended upgrade, a second `make test`) may hold the package locks: wait for
# them, up to APT_LOCK_WAIT seconds, rather than fail. apt-get install waits by itself with
# DPkg::Lock::Timeout; apt-get update does not wait for the lists' lock, so it is retried.
APT_LOCK_WAIT ?= 300
APT_RETRY_PAUSE ?= 5
debian-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$(echo $$p | sed 's/^taskset$$/util-linux/')"; done; \
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
$(VENV)/.serve-deps: requirements.txt requirements-train.txt | $(BIN)/python
	$(PIP) -r requirements-train.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-train.txt requirements-infra.txt requirements-dev.txt | $(BIN)/python
	$(PIP) -r requirements-dev.txt
	touch $@

$(VENV)/.infra-deps: requirements-infra.txt | $(BIN)/python
	$(PIP) -r requirements-infra.txt
	touch $@

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

# Settings are checked first, before anything slow installs or trains and before cdktf starts
# (which would print the app's error twice, inside its own): one line naming the bad setting.
settings-upload: | $(BIN)/python
	$(call refuse_bad_settings,$(BIN)/python -m training.upload --check --to "$(MODEL_URI)")

settings-%: | $(BIN)/python
	$(call refuse_bad_settings,$(BIN)/python cdktf/main.py --check $*)

refuse_bad_settings = $(call refuse,$(strip $(patsubst error:%,%,$(shell env $(command_line_variables) $(1) 2>&1 >/dev/null))))
# GNU make before 4.4 starts $(shell …) in the environment make itself started in, without the
# variables given on its command line: each is passed on, single-quoted for the shell.
command_line_variables = $(foreach name,$(.VARIABLES),$(if $(findstring command line,$(origin $(name))),$(name)='$(subst ','\'',$($(name)))'))
refuse = $(if $(1),$(error $(1)))

upload: settings-upload $(VENV)/.serve-deps $(MODEL)
	$(BIN)/python -m training.upload --source $(MODEL) --to "$(MODEL_URI)"

# No $(MODEL) prerequisite: publishing never trains a model behind the user's back.
publish: $(VENV)/.serve-deps
	MODEL_BUCKET="$(MODEL_BUCKET)" $(BIN)/python -m training.publish "$(MODEL)"

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

# With MODEL_URI set, the user's own model is served: nothing to train, and the iris curl
# would not fit it, so the hint is GET /, which says how to call whatever model is loaded.
run: run-port-free $(VENV)/.serve-deps $(if $(MODEL_URI),,$(MODEL))
	$(info Serving predict on http://$(HOST):$(PORT) (Ctrl-C stops). In another terminal:)
	$(info $(SPACE) $(if $(MODEL_URI),curl http://localhost:$(PORT)/,$(SEED_CURL)))
	$(info Its API, with a form to try it: http://localhost:$(PORT)/docs)
	exec $(BIN)/python -m function.server --host=$(HOST) --port=$(PORT)

# cdktf runs the app for every command without saying which stack it is for: STACK tells it.
# --migrate-state: once BOOTSTRAP_STATE_IN_BUCKET is set, the local state moves to the bucket.
bootstrap: settings-$(BOOTSTRAP_STACK) $(VENV)/.infra-deps node_modules/.installed
	STACK=$(BOOTSTRAP_STACK) $(CDKTF) deploy $(BOOTSTRAP_STACK) --migrate-state

synth: settings-$(STACK) $(VENV)/.infra-deps node_modules/.installed
	STACK=$(STACK) $(CDKTF) synth

# cdktf's HCL quotes the service's `provider = google-beta`, which Terraform refuses (its JSON is fine).
synth-hcl: settings-$(STACK) $(VENV)/.infra-deps node_modules/.installed
	STACK=$(STACK) $(CDKTF) synth --hcl
	sed -i -E 's/^( *provider += )"([a-z0-9_-]+)"$$/\1\2/' cdktf.out/stacks/*/cdk.tf

# With two stacks in the app, cdktf refuses a deploy or destroy that names none.
deploy destroy: settings-$(SERVING_STACK) $(VENV)/.infra-deps node_modules/.installed
	STACK=$(SERVING_STACK) $(CDKTF) $@ $(SERVING_STACK)

check-ip: $(VENV)/.infra-deps node_modules/.installed
	STACK=$(SERVING_STACK) $(BIN)/python cdktf/ops.py check-ip $(IP)

endpoint verify: $(VENV)/.infra-deps
	$(BIN)/python cdktf/ops.py $@

bench: $(VENV)/.dev-deps debian-deps
	$(BIN)/python -m bench.run

test: $(VENV)/.dev-deps debian-deps node_modules/.installed $(CHECKOV_VENV)/.installed
	$(BIN)/python -m pytest
