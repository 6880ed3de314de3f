# abi-orchestration: `make help` lists the targets. Every target bootstraps .venv itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ABI := $(BIN)/abi
STAMP := $(VENV)/.installed
SOURCE ?=

.DEFAULT_GOAL := help
.PHONY: help install collect collect-rss collect-api collect-db collect-files aggregate bridge all query backfill tick up schedule-install schedule-remove status runs logs lineage materialize check ui demo test lint bench clean
# What `make collect` (and so `make aggregate`, `make all`) collects first; add collect-api etc. as your sources need.
COLLECT ?= collect-rss

help: ## List the targets with a one-line description
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if command -v uv >/dev/null 2>&1; then \
	  uv pip install --python $(BIN)/python -q -e '.[dev]'; \
	else \
	  $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'; \
	fi
	@# compiled once here: with PYTHONDONTWRITEBYTECODE set (common in containers) every start would
	@# otherwise compile the project's modules again, which is most of what a small command costs
	@$(BIN)/python -m compileall -q cli collectors bridges storage >/dev/null
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the project and its dev tools (uv when present, else pip)

collect-rss: $(STAMP) ## Collect every RSS source of abi.toml (SOURCE=name for one)
	$(ABI) collect rss $(if $(SOURCE),--source $(SOURCE))

collect-api: $(STAMP) ## Collect the API sources of abi.toml (SOURCE=name for one)
	$(ABI) collect api $(if $(SOURCE),--source $(SOURCE))

collect-db: $(STAMP) ## Collect the database sources of abi.toml (SOURCE=name for one)
	$(ABI) collect db $(if $(SOURCE),--source $(SOURCE))

collect-files: $(STAMP) ## Process new files of the watched folders in abi.toml (SOURCE=name for one)
	$(ABI) collect files $(if $(SOURCE),--source $(SOURCE))

collect: $(COLLECT) ## Run the collection targets listed in COLLECT (default: collect-rss)

aggregate: collect ## Collect, then build every [aggregates.*] (each after the ones it reads)
	$(ABI) aggregate

bridge: aggregate ## Collect, aggregate, then write every [bridges.*] into the triple store
	$(ABI) bridge

all: bridge ## The whole chain in order: collect -> aggregate -> bridge

query: $(STAMP) ## Count the articles per topic in the triple store (Q='SELECT ...' for your own)
	$(ABI) query $(if $(Q),"$(Q)",'PREFIX schema: <http://schema.org/> PREFIX skos: <http://www.w3.org/2004/02/skos/core#> SELECT ?topic (COUNT(?a) AS ?articles) WHERE { ?a schema:about/skos:prefLabel ?topic } GROUP BY ?topic ORDER BY DESC(?articles)')

backfill: $(STAMP) ## Collect partitions FROM..TO of SOURCE that are missing (SOURCE=x FROM=2024-01-01 TO=...)
	$(ABI) backfill --source $(SOURCE) --from $(FROM) --to $(TO)

tick: $(STAMP) ## Run every source that is due, once (what cron calls every minute)
	$(ABI) tick

up: $(STAMP) ## Keep ticking in the foreground (Ctrl-C stops after the running jobs)
	$(ABI) tick --loop

schedule-install: $(STAMP) ## Put one crontab line per source in your crontab (idempotent)
	$(ABI) schedule --install

schedule-remove: $(STAMP) ## Take the abi lines out of your crontab, leaving the others
	$(ABI) schedule --remove

status: $(STAMP) ## One row per source, aggregate and bridge: last run, status, new/total, age, stale, next due
	$(ABI) status

runs: $(STAMP) ## Run history, newest first (SOURCE=name, STATUS=failed, SINCE=1d)
	$(ABI) runs $(if $(SOURCE),--source $(SOURCE)) $(if $(STATUS),--status $(STATUS)) $(if $(SINCE),--since $(SINCE))

logs: $(STAMP) ## The log of SOURCE's latest run, or of RUN=<run id>; FOLLOW=1 tails a running one
	$(ABI) logs $(if $(RUN),$(RUN),--source $(SOURCE)) $(if $(FOLLOW),--follow)

lineage: $(STAMP) ## The dependency graph: sources -> aggregates -> bridges -> stores (FORMAT=mermaid|dot|svg)
	$(ABI) lineage $(if $(FORMAT),--format $(FORMAT))

materialize: $(STAMP) ## Run everything now in dependency order (SELECT='*news_graph' for a part)
	$(ABI) materialize $(if $(SELECT),--select '$(SELECT)')

check: $(STAMP) ## Check every source, aggregate and bridge; post new alerts to the [alerts] webhook
	$(ABI) check

ui: $(STAMP) ## The web UI on http://127.0.0.1:3000/ (PORT=...); reads the datastore, never writes it
	$(ABI) ui $(if $(PORT),--port $(PORT))

demo: $(STAMP) ## Offline demo: sample feeds and API on 127.0.0.1, collect twice, aggregate, bridge, status
	$(ABI) demo

test: $(STAMP) ## Run the test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## Check the code with ruff
	$(BIN)/ruff check .

bench: $(STAMP) ## Run the benchmarks and print the numbers quoted in docs/benchmarks.md
	@$(BIN)/python -m compileall -q cli collectors bridges storage >/dev/null
	$(BIN)/python tests/benchmarks/bench_rss.py
	$(BIN)/python tests/benchmarks/bench_api.py
	$(BIN)/python tests/benchmarks/bench_db.py
	$(BIN)/python tests/benchmarks/bench_schedule.py
	$(BIN)/python tests/benchmarks/bench_bridge.py
	$(BIN)/python tests/benchmarks/bench_ui.py

clean: ## Remove .venv and caches (the datastore is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
