# Set-up and everyday commands. `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
# Images in the demo download: 10 classes x 50 training images + 10 x 10 validation images.
DEMO_FIXTURE ?= --classes 10 --per-class 50 --val-per-class 10
DEMO_BUILD ?= --formats tfrecord,imagefolder,webdataset --train-shards 8 --validation-shards 2 --shard-size 100

.PHONY: demo test lint unit bench bench-full clean

# The venv is (re)installed when the package's set-up changes (pyproject.toml, setup.py and the
# C extension's source); the stamps record which extras are in.
SETUP := pyproject.toml setup.py src/imagenet_prep/loaders/_jpegcrop.c

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-base: $(SETUP) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-bench: $(SETUP) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench,report]'
	touch $@ $(VENV)/.stamp-base

bench: $(VENV)/.stamp-bench
	$(BIN)/python bench/run.py --write-docs $(BENCH_ARGS)
	$(BIN)/python bench/resize.py --download bench/out/download-100x200x10 --write-docs
	$(BIN)/python bench/loaders.py --write-docs
	$(BIN)/python bench/onray.py --write-docs
	$(BIN)/python bench/objstore.py --write-docs

# Issue 21: ILSVRC2012's full image count (1.35 M images of 64x48, about 4 GB, kept in
# bench/out/) against 21,000 of the same size; about an hour here, and up to 25 GB of disk
# while it runs. Not part of `make bench` or `make test`. Resumes step by step
# (bench/out/full-scale/results.json); BENCH_FULL_ARGS=--redo measures everything again.
bench-full: $(VENV)/.stamp-bench
	$(BIN)/python bench/full_scale.py --write-docs $(BENCH_FULL_ARGS)

$(VENV)/.stamp-report: $(SETUP) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[report]'
	touch $@ $(VENV)/.stamp-base

$(VENV)/.stamp-test: $(SETUP) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.stamp-base

demo: $(VENV)/.stamp-report
	rm -rf $(DEMO)
	$(BIN)/imagenet-prep fixture $(DEMO)/download $(DEMO_FIXTURE)
	$(BIN)/imagenet-prep build --source $(DEMO)/download --output $(DEMO)/out $(DEMO_BUILD)
	$(BIN)/imagenet-prep verify $(DEMO)/out
	@echo
	@echo "Demo download (ILSVRC2012-shaped archives): $(DEMO)/download"
	@echo "TFRecords:   $(DEMO)/out/tfrecord/"
	@echo "ImageFolder: $(DEMO)/out/imagefolder/"
	@echo "WebDataset:  $(DEMO)/out/webdataset/"
	@echo "Boxes CSV:   $(DEMO)/out/imagenet_2012_bounding_boxes.csv"
	@echo "Labels:      $(DEMO)/out/labels.txt"
	@echo "Manifest:    $(DEMO)/out/manifest.json"
	@echo
	@echo "The report (plots, statistics, mean/std, contact sheets), to open in a browser:"
	$(BIN)/imagenet-prep report $(DEMO)/out

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

unit: $(VENV)/.stamp-test
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test: lint unit

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
