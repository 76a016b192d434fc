# Real-time anomaly detection for service logs on Apache Kafka.
# `make up` installs what it needs and runs the system; `make test` installs what it needs and tests it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR := .run
FOLLOW ?= 1
TOPIC ?= logs
IDLE_S ?= 10
ARGS ?=
NAB ?=
PYTEST_ARGS ?=
SECURE ?= 0

.DEFAULT_GOAL := help
.PHONY: help install browser kernels kafka-up kafka-down consume train serve process simulate up down logs status screenshot \
        bench-state peers-venv flood test test-unit test-integration test-faults test-kafka-python lint format schemas \
        eval eval-pipeline bench soak clean \
        cluster-up cluster-down cluster-status images stack-up stack-down test-containers monitoring-tools \
        monitoring-up monitoring-down compose-plugin

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11+ is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python packages into $(VENV) ..."
	@$(PY) -m pip install -q --upgrade pip > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install -e ".[dev]" >> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP) ## Create the virtualenv and install the project (done by every target that needs it)

kafka-up: $(STAMP) ## Start Kafka (Docker if an engine runs, else a local KRaft broker) and create the topics
	@$(PY) kafka-docker/main.py up

kafka-down: $(STAMP) ## Stop Kafka
	@$(PY) kafka-docker/main.py down

consume: $(STAMP) ## Kafka's console consumer: make consume TOPIC=logs ARGS="--from-beginning" (ends after IDLE_S=10 s idle)
	@$(PY) kafka-docker/main.py consume --idle-s $(IDLE_S) $(TOPIC) $(ARGS)

train: $(STAMP) ## Train the model (fastapi-ml-service/model.joblib + model.json); a running ML service reloads it
	@$(PY) scripts/stack.py train $(ARGS)

serve: $(STAMP) ## Run the ML service in the foreground (http://127.0.0.1:8000)
	@cd fastapi-ml-service && ../$(PY) main.py

process: $(STAMP) ## Run the processor in the foreground (one process per partition of logs: every core)
	@cd processor && ../$(PY) main.py

simulate: $(STAMP) ## Run the log simulator in the foreground (ARGS="--rate 100 --count 1000")
	@cd log-simulator && ../$(PY) main.py $(ARGS)

up: $(STAMP) ## Start Kafka, train if needed, start all services in the background, follow the processor (FOLLOW=0 to return)
	@$(PY) scripts/stack.py up --follow $(FOLLOW)

down: $(STAMP) ## Stop everything `make up` started
	@$(PY) scripts/stack.py down

logs: $(STAMP) ## Follow the processor's output again (Ctrl-C stops following, not the services)
	@$(PY) scripts/stack.py logs

status: $(STAMP) ## Show what runs, where, and whether each part is healthy
	@$(PY) scripts/stack.py status

CHROMIUM ?= /usr/bin/chromium

browser: ## Install Debian's Chromium for the dashboard's browser test (apt-get, once)
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "Installing Chromium (Debian package) for the dashboard's browser test ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	    || { echo "error: could not install chromium; install it (apt-get install chromium) and re-run"; exit 1; }; \
	fi

PROMETHEUS ?= /usr/bin/prometheus
ALERTMANAGER ?= /usr/bin/prometheus-alertmanager

# Debian starts both as system services when systemd runs; stopped and disabled at once, as the Alertmanager
# service would listen on 9093, the local Kafka broker's controller port. The project runs its own (9090, 9193).
monitoring-tools: ## Install Debian's Prometheus and Alertmanager for the monitoring tests and monitoring-up (apt-get, once)
	@if [ ! -x "$(PROMETHEUS)" ] || [ ! -x "$(ALERTMANAGER)" ]; then \
	  echo "Installing Prometheus and Alertmanager (Debian packages) ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager >/dev/null \
	    || { echo "error: could not install them; apt-get install prometheus prometheus-alertmanager, and re-run"; exit 1; }; \
	  if [ -d /run/systemd/system ]; then \
	    $$SUDO systemctl disable --now prometheus prometheus-alertmanager >/dev/null 2>&1 || true; \
	  fi; \
	fi

monitoring-up: $(STAMP) monitoring-tools ## Prometheus (:9090) and Alertmanager (:9193) on the running stack; prints their URLs
	@$(PY) scripts/monitoring.py up

monitoring-down: $(STAMP) ## Stop what monitoring-up started
	@$(PY) scripts/monitoring.py down

screenshot: $(STAMP) browser ## Regenerate docs/dashboard.png with the browser test (real broker, real Chromium)
	@$(PY) kafka-docker/main.py fetch-jars
	@UPDATE_SCREENSHOT=1 $(PY) -m pytest -q tests/integration/test_dashboard_browser.py $(PYTEST_ARGS)
	@echo "docs/dashboard.png updated"

# The processor's integration and fault tests (marked both_clients) run once on each Kafka client it has:
# confluent (librdkafka, the default) and kafka-python. pytest-xdist spreads every test over TEST_WORKERS
# workers, each with its own broker on free ports: most of a test's time is waiting on processes and the broker.
# Tests marked alone run after them, on their own (exit code 5: PYTEST_ARGS selected none of them).
TEST_WORKERS ?= 4

# The detector's numba kernels, compiled once into their cache before the parallel workers start: each would
# otherwise compile them at the same time (about 16 s of CPU each on a fresh clone).
kernels: $(STAMP)
	@$(PY) -m streaming_detector.warm

test: $(STAMP) kernels browser monitoring-tools ## Run every test (unit, integration and faults on a real Kafka broker; processor tests on both Kafka clients)
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) -m pytest -n $(TEST_WORKERS) -m "not alone" $(PYTEST_ARGS)
	@$(PY) -m pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-kafka-python: $(STAMP) kernels ## The processor's integration and fault tests on kafka-python alone (make test runs them on both clients)
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) -m pytest -n $(TEST_WORKERS) -m both_clients --kafka-clients=kafka-python tests/integration tests/faults $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run the fast unit tests (no broker)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) kernels browser monitoring-tools ## Run the integration tests (real broker, real processes)
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) -m pytest -n $(TEST_WORKERS) -m "not alone" tests/integration $(PYTEST_ARGS)
	@$(PY) -m pytest -m alone tests/integration $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-faults: $(STAMP) ## Run the fault tests alone (kills, outages, broker bounce), printing their tallies
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) -m pytest -m faults -s tests/faults $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy on the packages
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy eventbus streaming_detector evaluation devstack benchmarks kafka-docker/local_kafka fastapi-ml-service/ml_service log-simulator/log_simulator processor/anomaly_processor scripts

format: $(STAMP) ## Format the code with ruff
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

schemas: $(STAMP) ## Regenerate the published JSON Schemas of the event and the verdict (docs/schema/)
	@$(PY) -m eventbus.schemas docs/schema

eval: $(STAMP) ## Detection quality on labelled scenarios (NAB=path/to/nab adds the NAB score)
	@$(PY) -m evaluation $(if $(NAB),--nab $(NAB)) $(ARGS)

eval-pipeline: $(STAMP) ## NAB (NAB=path/to/nab) through a running broker, ML service and processor, beside the offline replay
	@test -n "$(NAB)" || { echo "usage: make eval-pipeline NAB=path/to/nab [ARGS='--every 6']"; exit 2; }
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) benchmarks/nab_pipeline.py --nab $(NAB) $(ARGS)

PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

# The peers make bench measures against (Quix Streams, confluent-kafka) pin versions the project must not be held to.
$(PEERS_STAMP): benchmarks/peers/requirements.txt
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	@echo "Installing the benchmark's peers into $(PEERS_VENV) ..."
	@$(PEERS_VENV)/bin/python -m pip install -q -r benchmarks/peers/requirements.txt > $(PEERS_VENV)/install.log 2>&1 \
	  || { tail -30 $(PEERS_VENV)/install.log; exit 1; }
	@touch $(PEERS_STAMP)

peers-venv: $(PEERS_STAMP) ## The benchmark's peers (Quix Streams, confluent-kafka) in their own virtualenv, .venv-peers

bench: $(STAMP) $(PEERS_STAMP) ## Throughput, latency, HTTP rates and memory beside the original design and the peers (ARGS="--quick")
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) benchmarks/run.py $(ARGS)
	@$(PY) benchmarks/state_bench.py $(filter --quick,$(ARGS))

bench-state: $(STAMP) ## What the state changelog costs: throughput with and without it, restore of 1,000 services
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) benchmarks/state_bench.py $(ARGS)

FLOOD_SERVICES ?= 100000
flood: $(STAMP) ## A flood of FLOOD_SERVICES service names through one processor: RSS bound, no event lost
	@$(PY) kafka-docker/main.py fetch-jars
	@FLOOD_SERVICES=$(FLOOD_SERVICES) $(PY) -m pytest tests/integration/test_processor_state.py -k flood -s -q

DURATION ?= 600
RATE ?= 500
soak: $(STAMP) ## The whole pipeline at a steady rate (DURATION=600 s, RATE=500/s): in/out, lost, duplicates, memory
	@$(PY) kafka-docker/main.py fetch-jars
	@$(PY) benchmarks/soak.py --duration $(DURATION) --rate $(RATE) $(ARGS)

clean: ## Remove the virtualenv, the broker's files and jars, run files and caches
	@$(PY) kafka-docker/main.py down 2>/dev/null || true
	rm -rf $(VENV) $(PEERS_VENV) $(RUN_DIR) kafka-docker/.local kafka-docker/libs .pytest_cache .ruff_cache .mypy_cache

cluster-up: $(STAMP) ## Start three local KRaft brokers (RF 3, min.insync 2); SECURE=1 for TLS + SASL/SCRAM
	@KAFKA_MODE=local $(PY) kafka-docker/main.py fetch-jars
	@KAFKA_CLUSTER_SECURE=$(SECURE) $(PY) kafka-docker/main.py cluster-up

cluster-down: $(STAMP) ## Stop the local three-broker cluster
	@$(PY) kafka-docker/main.py cluster-down

cluster-status: $(STAMP) ## Show which cluster nodes run and which one leads the controller quorum
	@$(PY) kafka-docker/main.py cluster-status

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
CLUSTER ?= 0
STACK_FILES := -f staging/compose.yml $(if $(filter 1,$(CLUSTER)),-f staging/compose.cluster.yml)

images: $(STAMP) ## Build the images with no registry: Debian base (debootstrap), host wheelhouse, Maven jars, Debian's Prometheus
	@$(PY) scripts/images.py $(ARGS)

stack-up: ## Everything in containers with compose (CLUSTER=1: three brokers, RF 3); run `make images` first
	@$(COMPOSE) -p log-pipeline $(STACK_FILES) up -d
	@$(COMPOSE) -p log-pipeline $(STACK_FILES) ps

stack-down: ## Stop and remove the compose stack (its volumes stay; add ARGS=-v to drop them)
	@$(COMPOSE) -p log-pipeline $(STACK_FILES) down --remove-orphans $(ARGS)

test-containers: $(STAMP) ## Build every image, run the stack (one node, then three brokers): verdicts, Prometheus, Alertmanager (~10 min from nothing, not in CI)
	@CONTAINER_TESTS=1 COMPOSE="$(COMPOSE)" $(PY) -m pytest -s tests/containers $(PYTEST_ARGS)

GO ?= go
COMPOSE_VERSION ?= v5.6.0
CLI_PLUGINS ?= $(HOME)/.docker/cli-plugins

# Debian 12 packages only docker-compose 1.29. The Compose CLI plugin is a Go module: built from the Go module
# proxy's copy of its source (go install cannot: its go.mod has exclude directives). v5.6.0 builds with Go 1.26.
compose-plugin: ## Build `docker compose` (the Compose CLI plugin, COMPOSE_VERSION) from the Go module proxy (~3 min)
	@command -v $(GO) >/dev/null || { echo "error: Go is needed (GO=path/to/go)"; exit 1; }
	@src=$$(mktemp -d) && trap 'chmod -R u+w $$src; rm -rf $$src' EXIT && \
	  dir=$$($(GO) mod download -json github.com/docker/compose/v5@$(COMPOSE_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	  cp -r "$$dir/." "$$src" && chmod -R u+w "$$src" && mkdir -p $(CLI_PLUGINS) && \
	  echo "Building docker compose $(COMPOSE_VERSION) ..." && \
	  cd "$$src" && GOFLAGS=-mod=mod $(GO) build -trimpath \
	    -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)" \
	    -o $(CLI_PLUGINS)/docker-compose ./cmd
	@docker compose version
