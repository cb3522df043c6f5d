# seclake_ml: `make run` runs the training DAG locally end to end; `make test` runs the test suite.
# Both create .venv (Python 3.11) and install requirements-dev.lock on first use; the install is
# stamped so later calls skip it until the lock file changes.

SHELL := /bin/bash
empty :=
space := $(empty) $(empty)
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.seclake-installed

# Sample lake and run: 15 generated days hold the 14-day look-back that ends with the weekly
# interval of RUN_DATE ([2024-01-01 03:00, 2024-01-08 03:00) UTC).
LAKE_START ?= 2023-12-25
LAKE_DAYS ?= 15
LAKE_SEED ?= 7
LAKE_SCALE ?= --flows-per-day 30000 --dns-per-day 4000 --api-calls-per-day 6000
SOURCE_VERSION ?= 1
RUN_DATE ?= 2024-01-08T03:00:00+00:00
RUN_CONF ?= {"lookback_days": 14}
DAG_ID := seclake_ipinsights_training
SCORING_DAG_ID := seclake_ipinsights_scoring
RISK_DAG_ID := seclake_cloudtrail_risk_training
# The risk DAG's weekly interval ending with RUN_DATE's week (Mondays 04:00 UTC); 10 days of labelled events.
RISK_RUN_DATE ?= 2024-01-08T04:00:00+00:00
RISK_RUN_CONF ?= {"window_days": 10}
LAKE := $(CURDIR)/var/lake
WORK := $(CURDIR)/var/work
LAKE_STAMP := $(LAKE)/.generated-$(LAKE_START)-$(LAKE_DAYS)-$(LAKE_SEED)-v$(SOURCE_VERSION)-$(subst $(space),_,$(subst -,,$(LAKE_SCALE)))

# Project-local Airflow: nothing is written outside this folder.
export AIRFLOW_HOME := $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYTHONPATH := $(CURDIR)/plugins
# The package configuration for local runs (a DAG run reads the Airflow Variable first when it is set).
export SECLAKE_ML_CONFIG := $(shell cat $(CURDIR)/include/config/local.json 2>/dev/null | tr -d '\n')
export SECLAKE_ML_LAKE_ROOT := $(LAKE)
export SECLAKE_ML_WORK_LOCATION := $(WORK)
export SECLAKE_ML_SOURCE_VERSION := $(SOURCE_VERSION)
export SECLAKE_ML_RETRY_DELAY_SECONDS ?= 5

now = $$(date +%s.%N)
elapsed = $$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" $(1) $$(date +%s.%N))

.PHONY: help venv run test lake db clean mwaa-bundle config-doc workspace

help:
	@echo "make run    create .venv if needed, migrate a local Airflow DB, generate a sample lake,"
	@echo "            run the $(DAG_ID) DAG for $(RUN_DATE) and print what it extracted, then drop"
	@echo "            a new day into the lake, run $(SCORING_DAG_ID) and print its findings"
	@echo "make test   create .venv if needed and run the whole test suite"
	@echo "make clean  remove var/ (Airflow home, sample lake, outputs); keeps .venv"
	@echo "make mwaa-bundle [OFFLINE=1]"
	@echo "            write the Amazon MWAA bundle to dist/mwaa (dags/, plugins.zip, requirements.txt,"
	@echo "            startup.sh); OFFLINE=1 puts the requirements' wheels into plugins.zip"
	@echo "make config-doc  regenerate docs/configuration.md from the typed configuration"
	@echo "make workspace   serve the Airflow UI with the analyst workspace on http://localhost:$(WORKSPACE_PORT)/"
	@echo "                 (after make run; users admin (edit) and analyst (read-only), passwords printed)"

venv: $(STAMP)

$(STAMP): requirements-dev.lock
	@if [ ! -x "$(VPY)" ]; then \
		echo "creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"; \
		$(PYTHON) -m venv "$(VENV)"; \
	fi
	@echo "installing requirements-dev.lock into $(VENV) (first run takes a few minutes)"
	@t0=$(now); "$(VPY)" -m pip install --quiet -r requirements-dev.lock; \
		echo "installed in $(call elapsed,$$t0)"
	@touch "$@"

db: venv
	@mkdir -p "$(AIRFLOW_HOME)"
	@t0=$(now); "$(VENV)/bin/airflow" db migrate > "$(AIRFLOW_HOME)/db-migrate.log" 2>&1 \
		|| { tail -40 "$(AIRFLOW_HOME)/db-migrate.log"; exit 1; }; \
		echo "airflow db migrate: ok in $(call elapsed,$$t0) (DB under $(AIRFLOW_HOME))"

lake: $(LAKE_STAMP)

# Regenerated when its settings (the stamp's name) or the generator change, or when it is gone. The
# work folder holds what was made from the old lake (models, the scoring ledger, which would skip the
# new lake's objects of the same keys): it is set aside under a dated name, never deleted.
LAKEGEN_SOURCES := $(wildcard plugins/seclake_lakegen/*.py)

$(LAKE_STAMP): $(LAKEGEN_SOURCES) | venv
	@if [ -d "$(WORK)" ]; then \
		aside="$(WORK).old-$$(date -u +%Y%m%dT%H%M%SZ)"; mv "$(WORK)" "$$aside"; \
		echo "the sample lake is generated (again): $(WORK), made from an earlier lake, was moved to $$aside"; \
	fi
	@rm -rf "$(LAKE)"; mkdir -p var/logs
	@t0=$(now); "$(VPY)" -m seclake_ml lake generate --root "$(LAKE)" --start $(LAKE_START) \
		--days $(LAKE_DAYS) --seed $(LAKE_SEED) --source-version $(SOURCE_VERSION) $(LAKE_SCALE) > var/logs/lake-generate.log 2>&1 \
		|| { tail -40 var/logs/lake-generate.log; exit 1; }; \
		echo "sample lake: $(LAKE_DAYS) days from $(LAKE_START), seed $(LAKE_SEED), source version $(SOURCE_VERSION) in $(call elapsed,$$t0) -> $(LAKE)"
	@touch "$@"

run: venv db lake
	@mkdir -p var/logs
	@echo 'airflow dags test $(DAG_ID) $(RUN_DATE) -c $(RUN_CONF) (log: var/logs/dags-test.log)'
	@t0=$(now); "$(VENV)/bin/airflow" dags test $(DAG_ID) "$(RUN_DATE)" -c '$(RUN_CONF)' > var/logs/dags-test.log 2>&1 \
		|| { grep -E "ERROR|Error|error|failed|Traceback" var/logs/dags-test.log | tail -40; \
		     echo "dags test FAILED; full log: var/logs/dags-test.log"; exit 1; }; \
		echo "dags test: ok in $(call elapsed,$$t0)"
	@echo "---------------------------------------------------------------- summary"
	@"$(VPY)" -c "import sys; from seclake_ml.runs import print_latest_summary; \
		sys.exit(print_latest_summary('$(WORK)', '$(DAG_ID)'))"
	@echo "---------------------------------------------------------------- scoring a new log batch"
	@"$(VPY)" -m seclake_ml scoring adopt
	@"$(VPY)" -m seclake_ml lake drop-batch --root "$(LAKE)" --day next --seed $(LAKE_SEED) \
		--source-version $(SOURCE_VERSION) $(LAKE_SCALE) > var/logs/drop-batch.log 2>&1 \
		|| { tail -20 var/logs/drop-batch.log; exit 1; }
	@echo "new batch: day $$(grep -o '"day": "[0-9-]*"' var/logs/drop-batch.log | cut -d'"' -f4), \
		$$(grep -o '"objects": [0-9]*' var/logs/drop-batch.log | cut -d' ' -f2) objects dropped into $(LAKE)"
	@echo 'airflow dags test $(SCORING_DAG_ID) (log: var/logs/dags-test-scoring.log)'
	@t0=$(now); "$(VENV)/bin/airflow" dags test $(SCORING_DAG_ID) > var/logs/dags-test-scoring.log 2>&1 \
		|| { grep -E "ERROR|Error|error|failed|Traceback" var/logs/dags-test-scoring.log | tail -40; \
		     echo "dags test FAILED; full log: var/logs/dags-test-scoring.log"; exit 1; }; \
		echo "dags test: ok in $(call elapsed,$$t0)"
	@echo "---------------------------------------------------------------- findings"
	@"$(VPY)" -m seclake_ml scoring show --top 8 \
		--truth "$$(ls -d $(LAKE)/ground_truth/batches/* | sort | tail -1)/anomalies.parquet"
	@echo "---------------------------------------------------------------- CloudTrail risk models"
	@"$(VPY)" -m seclake_ml risk labels import --csv "$(LAKE)/ground_truth/synthetic_risk_labels.csv" \
		--root "$(LAKE)" --start $(LAKE_START) --end $$(date -u -d "$(LAKE_START) + $(LAKE_DAYS) days" +%Y-%m-%d) --source synthetic > var/logs/risk-labels.log 2>&1 \
		|| { tail -20 var/logs/risk-labels.log; exit 1; }
	@echo "labels: $$(grep -m1 -iE '^(stored|matched)' var/logs/risk-labels.log) (synthetic analyst labels from the generator; log: var/logs/risk-labels.log)"
	@echo 'airflow dags test $(RISK_DAG_ID) $(RISK_RUN_DATE) -c $(RISK_RUN_CONF) (log: var/logs/dags-test-risk.log)'
	@t0=$(now); "$(VENV)/bin/airflow" dags test $(RISK_DAG_ID) "$(RISK_RUN_DATE)" -c '$(RISK_RUN_CONF)' > var/logs/dags-test-risk.log 2>&1 \
		|| { grep -E "ERROR|Error|error|failed|Traceback" var/logs/dags-test-risk.log | tail -40; \
		     echo "dags test FAILED; full log: var/logs/dags-test-risk.log"; exit 1; }; \
		echo "dags test: ok in $(call elapsed,$$t0)"
	@"$(VPY)" -m seclake_ml risk report
	@echo "---------------------------------------------------------------- riskiest CloudTrail events of the new day"
	@day=$$(ls -d $(LAKE)/ground_truth/batches/* | sort | tail -1 | xargs basename); \
		"$(VPY)" -m seclake_ml risk score --start $$day --end $$(date -u -d "$$day + 1 day" +%Y%m%d) \
		--out "$(WORK)/risk/scores/day=$$day.parquet" --force --top 8

test: venv
	@export AIRFLOW_HOME="$(CURDIR)/var/airflow-test"; mkdir -p "$$AIRFLOW_HOME"; \
		unset SECLAKE_ML_CONFIG SECLAKE_ML_LAKE_ROOT SECLAKE_ML_WORK_LOCATION SECLAKE_ML_SOURCE_VERSION; \
		"$(VPY)" -m pytest -q $(PYTEST_ARGS)

# The MWAA bundle (include/mwaa/build_bundle.py, standard library only). OFFLINE=1 needs a Python 3.12
# (pyenv's, or SECLAKE_PYTHON312) to build the wheels; they are cached under var/mwaa-wheels.
OFFLINE ?=
mwaa-bundle:
	@"$(PYTHON)" include/mwaa/build_bundle.py --out "$(CURDIR)/dist/mwaa" $(if $(filter 1 yes true,$(OFFLINE)),--offline)

# docs/configuration.md from the typed configuration (tests/test_configuration_doc.py fails when stale).
config-doc: venv
	@"$(VPY)" include/config/reference.py

clean:
	rm -rf var

# The Airflow api-server with the plugin's analyst workspace over make run's lake and work folder.
WORKSPACE_PORT ?= 8080
workspace: venv db
	@echo "analyst workspace: http://localhost:$(WORKSPACE_PORT)/seclake-ml/ (also 'Analyst workspace' in the UI's menu)"
	@echo "users: admin (Admin), analyst (Viewer); passwords: $(AIRFLOW_HOME)/simple_auth_manager_passwords.json"
	AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,analyst:viewer" \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$(AIRFLOW_HOME)/simple_auth_manager_passwords.json" \
	"$(VENV)/bin/airflow" api-server --port $(WORKSPACE_PORT)

