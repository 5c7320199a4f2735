# Set-up is part of every target: a fresh machine with Python 3.11 and pip needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test figures course bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first: the pinned CPU build, so that resolving `torch>=2.4` later installs nothing more
# (it is named again with the package so that no dependency may upgrade it).
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]' torch==2.13.0
	# curvlinops depends on backpack, which depends on torchvision: PyPI's torchvision is built for
	# CUDA torch and, next to the CPU build, breaks `import transformers`. Nothing here imports it.
	$(PY) -m pip uninstall --quiet --yes torchvision
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

# RECOMPUTE=1 retrains and retimes instead of reusing cached results (runs/train)
figures: $(STAMP)
	$(PY) -m analysis.figures $(if $(RECOMPUTE),--recompute,)

# the notebooks executed through a Jupyter kernel, outputs and figures inline, in build/notebooks
course: $(STAMP)
	$(PY) -m analysis.figures --kernel $(if $(RECOMPUTE),--recompute,)

bench: $(STAMP)
	$(PY) benchmarks/optimizer_step.py
	$(PY) benchmarks/stationary.py

clean-venv:
	rm -rf $(VENV)
