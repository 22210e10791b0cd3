# Transcode Flow: `make demo` and `make test` are the whole set-up on a fresh
# Debian 12 machine (as root). Every target installs what it needs first.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
ENV := source scripts/env.sh &&
VIDEO ?=

.PHONY: demo test bench load deps venv airflow-db up down status clean

deps:
	@scripts/install_deps.sh

$(STAMP): requirements.txt pyproject.toml
	scripts/make_venv.sh

venv: deps $(STAMP)

airflow-db: venv
	@scripts/setup_airflow.sh

## Start the stack, upload one video (default: Big Buck Bunny clip) over HTTP, wait, print the result.
demo: airflow-db
	@$(ENV) python scripts/demo.py $(if $(VIDEO),"$(abspath $(VIDEO))")

## The whole test suite (starts its own PostgreSQL and S3 stand-in).
test: airflow-db
	@$(ENV) python -m pytest -q -p no:cacheprovider

## Benchmarks, printed as ratios against named baselines.
bench: airflow-db
	@$(ENV) python scripts/bench.py

## The local stack: Airflow (UI 127.0.0.1:8080), job API (127.0.0.1:5000).
up: airflow-db
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

status:
	@scripts/stack.sh status

## The seed's locust scenario (10 users, 2 min) against the running stack.
load: venv
	@scripts/load_test.sh

clean: down
	rm -rf var
