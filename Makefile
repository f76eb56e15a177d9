# The README's two commands:
#   make demo   -> set up (core only) and run the main job offline on the shipped defaults
#   make test   -> set up everything (apt packages for the GUI tests, all extras, upstream sam2 for
#                  parity tests) and run the test suite
# Torch is installed first and pinned: anything that asks for torch before it would pull a
# multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
PIN := $(VENV)/torch-pin.txt
PYTEST_ARGS ?=
OUT ?= out

.PHONY: demo test test-all lint venv setup-core setup-test apt-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PIN): | $(BIN)/python
	$(PIP) install "torch==$(TORCH_VERSION)"
	echo "torch==$(TORCH_VERSION)" > $(PIN)

venv: $(PIN)

setup-core: $(PIN)
	$(PIP) install -c $(PIN) -e ".[video,bench]"

setup-test: $(PIN) apt-test
	$(PIP) install -c $(PIN) setuptools wheel
	$(PIP) install -c $(PIN) -e ".[all]"
	# Upstream SAM 2 (byte-identical to facebookresearch/sam2) for the parity tests only.
	$(PIP) install --no-deps --no-build-isolation "sam2==1.1.0"
	# Independent cross-checks: vos-benchmark's J&F (its opencv-python pin clashes with the
	# headless build already installed, hence --no-deps) and pycocotools' RLE.
	$(PIP) install -c $(PIN) --no-deps vos-benchmark pycocotools
	# SAMURAI's reference code (a sam2 fork with samurai_mode, Apache-2.0) for its parity test:
	# its package is also called "sam2", so it is unpacked into .ref/, not installed.
	@test -d .ref/absolutely_not_samurai-1.0.0 || ( $(PIP) download --no-deps --no-build-isolation --no-binary :all: -d .ref \
	  "absolutely-not-samurai==1.0.0" && tar -xzf .ref/absolutely_not_samurai-1.0.0.tar.gz -C .ref )

# System packages the GUI / video tests need (Xvfb for napari's OpenGL, ffprobe for FiftyOne,
# chromium for the FiftyOne App screenshot test).
apt-test:
	@missing=""; for p in xvfb libxcb-icccm4 libxcb-keysyms1 ffmpeg chromium; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: setup-core
	$(BIN)/python -m benchmarks demo --output-dir $(OUT)/demo --overwrite

# Lint and types (configured in pyproject.toml): part of the test command, so of CI.
lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

test: setup-test lint
	FIFTYONE_DO_NOT_TRACK=true FIFTYONE_DATABASE_VALIDATION=false \
	  $(BIN)/python -m pytest -q -rs -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

test-all: setup-test
	FIFTYONE_DO_NOT_TRACK=true FIFTYONE_DATABASE_VALIDATION=false \
	  $(BIN)/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

bench: setup-test
	$(BIN)/python -m benchmarks --help

clean:
	rm -rf $(VENV) $(OUT) *.egg-info
