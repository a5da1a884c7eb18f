# Rentify developer entry points (GNU make). `make` alone lists the targets.
#
# Targets marked "##" are listed by `make help`. Variables you may override:
#   PORT (8080), DATABASE_URL, CARGO_TARGET_DIR (outside the repo, shared between clones).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO_TARGET_DIR ?= $(HOME)/.cache/rentify-target
export CARGO_TARGET_DIR

PORT ?= 8080
export PORT
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rentify
export DATABASE_URL

RELEASE_BIN := $(CARGO_TARGET_DIR)/release/rentify
DEBUG_BIN   := $(CARGO_TARGET_DIR)/debug/rentify

# Same server as DATABASE_URL, maintenance database `postgres` (for CREATE/DROP DATABASE).
PG_ADMIN_URL := $(shell sed -E 's|^([a-z]+://[^/?]*)(/[^?]*)?|\1/postgres|' <<<'$(DATABASE_URL)')

.PHONY: help services build run demo test bench fmt fmt-check lint openapi clean-test-dbs

help: ## List the targets
	@echo "Rentify — make targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "} {printf "  %-15s %s\n", $$1, $$2}'

services: ## Start (installing if needed) PostgreSQL+PostGIS, Redis, NATS; create the database
	scripts/dev-services.sh

build: ## Build the release binary (package rentify)
	cargo build --release -p rentify

# `make run` uses the in-process Redis/NATS stand-ins unless REDIS_URL/NATS_URL are set,
# so it only needs the optional services in that case.
run: ## Start services, migrate, load demo data, and run API + worker on PORT (8080)
	scripts/dev-services.sh $(if $(REDIS_URL)$(NATS_URL),,--no-optional)
	cargo build --release -p rentify
	$(RELEASE_BIN) migrate
	$(RELEASE_BIN) seed --demo
	@echo "Rentify API docs: http://localhost:$(PORT)/docs — health: http://localhost:$(PORT)/health/ready"
	exec $(RELEASE_BIN) all

demo: ## Walk the whole journey (sign-up to reviews and payout) against a running `make run`
	python3 scripts/demo.py --base-url http://127.0.0.1:$(PORT)

test: ## Run the whole test suite against real PostgreSQL, Redis and NATS
	scripts/test.sh

bench: ## Run the benchmarks (scripts/bench.sh)
	bash scripts/bench.sh


fmt: ## Format the code (cargo fmt)
	cargo fmt --all

fmt-check: ## Check formatting without changing files
	cargo fmt --all -- --check

lint: fmt-check ## Check formatting and run clippy with warnings as errors
	cargo clippy --workspace --all-targets -- -D warnings

# Built in debug (quicker than release); written via a temp file so a failure
# never leaves a truncated docs/openapi.json behind.
openapi: ## Write the OpenAPI document to docs/openapi.json
	cargo build -p rentify
	mkdir -p docs
	$(DEBUG_BIN) openapi > docs/openapi.json.tmp
	mv docs/openapi.json.tmp docs/openapi.json
	@echo "wrote docs/openapi.json"

clean-test-dbs: ## Drop leftover test databases (rentify_test_*) and templates (rentify_tpl_*)
	@psql '$(PG_ADMIN_URL)' -XAtq <<<"SELECT format('DROP DATABASE %I WITH (FORCE)', datname) \
	  FROM pg_database WHERE datname LIKE 'rentify\_test\_%' OR datname LIKE 'rentify\_tpl\_%' \gexec"
	@echo "test databases dropped"
