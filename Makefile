# streamcompose: `make demo` and `make test` work on a fresh machine with Python 3.11,
# Java 17 and Maven; everything else is installed here. `make install GPU=1` installs
# onnxruntime-gpu instead of onnxruntime (the two cannot be installed side by side).
PYTHON ?= python3.11
GPU ?= 0
ORT := $(if $(filter-out 0,$(GPU)),gpu,cpu)
VENV := .venv
PY := $(VENV)/bin/python
SC := $(VENV)/bin/streamcompose
PORT ?= 9092
BOOTSTRAP := 127.0.0.1:$(PORT)
BROKER_DIR ?= .streamcompose/broker-$(PORT)
export STREAMCOMPOSE_BOOTSTRAP := $(BOOTSTRAP)

# A newer interpreter for the tests that need no broker (CI: the whole suite on 3.11, these on 3.12).
PYTHON312 ?= python3.12
VENV312 := .venv312

.PHONY: install models broker broker-stop test unit unit-py312 lint demo bench clean

# Installs the project into the venv of interpreter $(1), with onnxruntime (GPU=0) or
# onnxruntime-gpu (GPU=1): the two write the same `onnxruntime` package, so the other one
# is removed first. rapidocr-onnxruntime (examples) requires the CPU package, which then
# overwrites onnxruntime-gpu's files: with GPU=1 it is removed again and onnxruntime-gpu
# laid anew (rapidocr imports `onnxruntime`, which onnxruntime-gpu provides).
define pip_install
	$(1) -m pip install --quiet --upgrade pip
	$(1) -m pip uninstall --quiet -y $(if $(filter gpu,$(ORT)),onnxruntime,onnxruntime-gpu)
	$(1) -m pip install --quiet -e ".[$(ORT),examples,otel,test]"
	$(if $(filter gpu,$(ORT)),$(1) -m pip uninstall --quiet -y onnxruntime)
	$(if $(filter gpu,$(ORT)),$(1) -m pip install --quiet --force-reinstall --no-deps \
		"onnxruntime-gpu==$$($(1) -m pip show onnxruntime-gpu | sed -n 's/^Version: //p')")
endef

$(VENV)/.installed-$(ORT): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call pip_install,$(PY))
	rm -f $(VENV)/.installed-*
	touch $@

install: $(VENV)/.installed-$(ORT)  ## create .venv and install the project with test deps

models: install  ## train the example models (small, not committed; seconds to a minute)
	$(PY) scripts/train_digits.py --out topologies/models
	$(PY) scripts/train_textgraph.py --out topologies/models
	$(PY) scripts/train_moe.py --out topologies/models
	$(PY) scripts/train_text.py --out topologies/models

broker: install  ## start the local Kafka broker (real Apache Kafka, KRaft)
	$(SC) broker start --port $(PORT) --data-dir $(BROKER_DIR)

broker-stop:
	-$(SC) broker stop --port $(PORT) --data-dir $(BROKER_DIR)

lint: install
	$(VENV)/bin/ruff check streamcompose tests scripts topologies benchmarks

unit: models  ## tests that need no broker
	$(PY) -m pytest -m "not integration" -q

$(VENV312)/.installed-$(ORT): pyproject.toml
	$(PYTHON312) -m venv $(VENV312)
	$(call pip_install,$(VENV312)/bin/python)
	rm -f $(VENV312)/.installed-*
	touch $@

topologies/models:  # trained once for targets that only read the models
	$(MAKE) models

unit-py312: $(VENV312)/.installed-$(ORT) | topologies/models  ## the tests that need no broker, on Python 3.12
	$(VENV312)/bin/python -m pytest -m "not integration" -q -p no:cacheprovider

test: models lint  ## the whole suite against a fresh local broker
	$(SC) broker start --port $(PORT) --data-dir $(BROKER_DIR) --fresh
	status=0; $(PY) -m pytest -q -p no:cacheprovider || status=$$?; \
	$(SC) broker stop --port $(PORT) --data-dir $(BROKER_DIR); exit $$status

demo: models broker  ## deploy the OCR cascade and recognise text in sample images
	$(PY) scripts/ocr_demo.py --bootstrap $(BOOTSTRAP)

bench: models broker  ## every benchmark (ratios in one run; see benchmarks/README.md)
	$(PY) benchmarks/overhead.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/ensemble.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/delivery.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/soak.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/text.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/serving.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/upgrade.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/gpu.py --device cpu
	$(PY) benchmarks/observe.py
	$(PY) benchmarks/joiner.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/batching.py --bootstrap $(BOOTSTRAP) --adaptive
	$(PY) benchmarks/ocr.py --bootstrap $(BOOTSTRAP)

clean: broker-stop
	rm -rf $(VENV) $(VENV312) .streamcompose topologies/models topologies/ocr/samples
