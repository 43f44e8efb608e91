# cems: `make demo` and `make test` set everything up (idempotently) and run.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-remark unit integration bench fuzz clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m lab.demo $(ARGS)

test: setup
	$(PY) -m pytest -v tests

# the closed loop's re-marking end to end, on its own: it is flaky here (README "Closed loop")
test-remark: setup
	CEMS_REMARK_E2E=1 $(PY) -m pytest -v -s tests/integration/test_policy.py -k re_marked

unit: setup
	$(PY) -m pytest -v tests/unit

integration: setup
	$(PY) -m pytest -v tests/integration

bench: setup
	$(PY) bench/bench_stats.py
	$(PY) bench/bench_qoe.py
	$(PY) bench/bench_csm.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_stream.py
	$(PY) bench/bench_failover.py --runs 5
	$(PY) bench/bench_probe.py
	$(PY) bench/bench_grpc.py
	$(PY) bench/bench_experience.py
	$(PY) bench/bench_policy.py
	$(PY) bench/bench_loop.py --runs 5

fuzz: setup
	$(PY) -m tests.fuzz.fuzz

clean:
	rm -rf $(VENV) .venv-ryu gen .pytest_cache .hypothesis
