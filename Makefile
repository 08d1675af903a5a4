# Two commands on a fresh machine:  `make demo` (install + main job)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PHOTOS ?= ../shared/data/nature-quizzer-train/images
OUT ?= out

.PHONY: install demo test lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	mkdir -p $(OUT)
	$(VENV)/bin/taxoclip predict $(PHOTOS) --model mini --rank species --k 3 --output $(OUT)/predictions.csv

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done
