# candle_mbo: one-command setup, test, demo and benchmarks on Debian 12 (root; Debian + CRAN; no PyPI).
#   make demo    set up if needed, then run an HPO of the bundled PyTorch digits example with mlrMBO
#   make test    set up if needed, then run the test suite without the tests marked slow
#   make test-all  the whole suite, slow tests included (what CI runs)
#   make bench   set up if needed, then run the benchmarks in bench/ (prints ratios measured side by side)

SHELL := /bin/bash
PYTHON := .venv/bin/python
NP ?= 3
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

APT_PACKAGES := r-base-core r-base-dev r-cran-mlr r-cran-paramhelpers r-cran-lhs r-cran-randomforest \
  r-cran-rgenoud r-cran-rcpparmadillo r-cran-rcpp r-cran-checkmate r-cran-bbmisc r-cran-data.table \
  r-cran-backports r-cran-parallelmap r-cran-ggplot2 r-cran-plotly r-cran-plot3d r-cran-rcolorbrewer \
  r-cran-misc3d r-cran-ranger r-cran-emoa r-cran-jsonlite \
  python3-rpy2 python3-mpi4py openmpi-bin libopenmpi-dev python3-numpy python3-yaml python3-pytest \
  python3-torch python3-sklearn python3-matplotlib python3-optuna python3-venv python3-pip \
  python3-setuptools python3-pandas python3-scipy python3-jinja2 python3-websocket chromium curl \
  ca-certificates

SETUP_INPUTS := Makefile R/install_packages.R pyproject.toml

.PHONY: setup test test-all test-fast demo bench clean
setup: .setup-stamp

.setup-stamp: $(SETUP_INPUTS)
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(APT_PACKAGES) 2>/dev/null | awk '$$4!="installed"{print $$1}'; \
	  for p in $(APT_PACKAGES); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done | sort -u); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages: $$missing" | tr '\n' ' '; echo; \
	  if [ "$$(id -u)" != 0 ]; then echo "setup: needs root for apt-get (or use environment.yml with conda)"; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "setup: Debian packages present"; fi
	Rscript R/install_packages.R
	@test -x $(PYTHON) || /usr/bin/python3 -m venv --system-site-packages .venv
	$(PYTHON) -m pip install --no-build-isolation --no-deps --no-index -q -e .
	$(PYTHON) -c "import candle, candle_mbo, rpy2, mpi4py, numpy, yaml, torch, sklearn, matplotlib, pandas, scipy, jinja2; print('setup: python packages ready; import candle is', candle.__name__)"
	@touch $@

test: setup
	$(PYTHON) -m pytest -q -m "not slow" tests

test-all: setup
	$(PYTHON) -m pytest -q tests

test-fast: test

demo: setup
	rm -rf experiments/demo
	mpiexec -n $(NP) $(PYTHON) -m candle_mbo --model examples/digits/digits_baseline.py \
	  --space examples/digits/space.R --budget 40 --seed 1 --output experiments/demo

bench: setup
	$(PYTHON) bench/run_all.py

clean:
	rm -rf .setup-stamp experiments .pytest_cache candle_mbo.egg-info
