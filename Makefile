# Two commands for a newcomer: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DUCKDB_PATH ?= $(CURDIR)/warehouse.duckdb
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
DBT := $(BIN)/dbt --no-use-colors
DBT_ARGS := --project-dir dbt_project --profiles-dir .
DEMO_REVIEWS ?= 50000
BENCH_REVIEWS ?= 1000000
QUALITY_CSV ?=
QUALITY_SYNTH ?= --synth longtail:100000 --synth dense:300000

.PHONY: install demo build docs test lint chromium edge bench bench-quality figures clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## The whole job on the embedded DuckDB default, on synthetic data.
demo: install
	$(BIN)/python -m trainer synth --out data/reviews.csv --reviews $(DEMO_REVIEWS)
	$(BIN)/python -m trainer load data/reviews.csv
	$(DBT) build $(DBT_ARGS) --quiet
	$(BIN)/python -m trainer sql "select * from quality_summary"
	$(BIN)/python -m trainer sql "select * from quality_rejects_by_reason"
	$(BIN)/python -m trainer train
	$(BIN)/python -m trainer recommend --user "$$($(BIN)/python -m trainer sql --csv \
		"select user_id from interaction_splits where split = 'valid' order by user_id limit 1")"

## dbt build on the default target (DuckDB) after `python -m trainer load CSV`.
build: install
	$(DBT) build $(DBT_ARGS)

## The data dictionary (dbt docs: models, columns, sources, exposures) after `make demo`.
docs: install
	$(DBT) docs generate $(DBT_ARGS)

lint: install
	$(BIN)/ruff check trainer tests benchmarks
	$(BIN)/ruff format --check trainer tests benchmarks
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests dbt_project/analyses

test: lint chromium edge
	$(BIN)/pytest -q

## The ai-recommend Edge Function: deno fmt/lint/check and its tests. Deno comes from the npm
## registry into .tools/ (the `deno` package ships the binary); its npm imports are cached there
## once, pinned by deno.lock (--frozen: a changed lock fails instead of resolving anew).
DENO := .tools/node_modules/.bin/deno
EDGE := supabase/functions/ai-recommend
$(DENO):
	npm install --prefix .tools --no-audit --no-fund --silent deno@2.9.6
edge: $(DENO)
	cd $(EDGE) && export DENO_DIR=$(CURDIR)/.tools/deno-cache && \
	  $(CURDIR)/$(DENO) fmt --check && $(CURDIR)/$(DENO) lint && \
	  $(CURDIR)/$(DENO) check --frozen index.ts handler_test.ts && \
	  $(CURDIR)/$(DENO) test --frozen --allow-env handler_test.ts

## Debian's Chromium for the browser test (tests/e2e/test_report.py), installed when missing;
## CHROMIUM_PATH names another browser instead (CI on GitHub: the runner's Chrome).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || [ -n "$$CHROMIUM_PATH" ] || \
	  $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

## The two-tower beside EASE, ALS and BPR, every choice made on the tune slice.
bench-quality: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.quality $(QUALITY_CSV) $(QUALITY_SYNTH)

## Timings and peak memory for load, dbt build, training and write-back at 1M reviews, both shapes.
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.pipeline --reviews $(BENCH_REVIEWS)

## Every figure in the README's quality and benchmark sections, regenerated in one go.
figures: bench-quality bench

clean:
	rm -rf artifacts data warehouse.duckdb dbt_project/target dbt_project/logs logs
