# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Every dependency, direct and transitive, is pinned with hashes in requirements/lock.txt
# (made by `make lock` from pyproject.toml's ranges). torch is pinned there to the 2.13.0
# CPU build; a GPU user can put a CUDA build over it, e.g.
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?=
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/secagg_pb/v1/*.proto)
PIP_TOOLS := pip-tools==7.7.0
# The peer systems we compare against (Flower SecAgg+, NVIDIA FLARE HE; benchmarks/peers/)
# live in their own venv, hash-pinned in requirements/peers.txt: `make peers`.
PEERS_VENV ?= .peers-venv
PEERS_LOCK := requirements/peers.txt
PEERS_STAMP := $(PEERS_VENV)/.installed

.PHONY: demo test test-fast bench lint proto proto-check venv lock peers peers-lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q $(TORCH_SPEC))
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@touch $@

# Re-resolve every pin from pyproject.toml's ranges (newest versions that fit), with
# hashes. Then: `make proto` (the generated code follows the pinned grpcio-tools),
# `make test`, and commit requirements/lock.txt with whatever `make proto` changed.
lock: $(STAMP)
	$(BIN)/python -m pip install -q $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
		--extra dev --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		--constraint requirements/constraints.txt --upgrade --output-file $(LOCK) pyproject.toml
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)

# The peers' own venv (flwr 1.42.0, nvflare 2.9.0, tenseal 0.3.18 and their dependencies,
# the versions of benchmarks/peers/results/); `secagg bench suite --peers` and
# benchmarks/peers/compare_flower.sh use $(PEERS_VENV)/bin/python.
peers: $(PEERS_STAMP)

$(PEERS_STAMP): $(PEERS_LOCK)
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --require-hashes --no-deps -r $(PEERS_LOCK)
	$(PEERS_VENV)/bin/python -m pip check
	@touch $@

# Re-resolve requirements/peers.txt from requirements/peers.in, held at the recorded versions.
peers-lock: $(STAMP)
	$(BIN)/python -m pip install -q $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make peers-lock" $(BIN)/pip-compile --quiet --generate-hashes \
		--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		--constraint benchmarks/peers/results/pip-freeze-peer-flwr.txt \
		--output-file $(PEERS_LOCK) requirements/peers.in

demo: $(STAMP)
	$(BIN)/secagg demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,stddev,rounds -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto $(PROTOS)

# Fails when the committed generated code differs from what `make proto` makes.
proto-check: proto
	git diff --exit-code -- proto/

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks .import_linter_cache .grimp_cache
