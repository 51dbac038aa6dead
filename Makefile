# streamcompose: `make demo` and `make test` work on a fresh machine with Python 3.11,
# Java 17 and Maven; everything else is installed here.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SC := $(VENV)/bin/streamcompose
PORT ?= 9092
BOOTSTRAP := 127.0.0.1:$(PORT)
BROKER_DIR ?= .streamcompose/broker-$(PORT)
export STREAMCOMPOSE_BOOTSTRAP := $(BOOTSTRAP)

.PHONY: install models broker broker-stop test unit lint demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[examples,test]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install the project with test deps

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

test: models lint  ## the whole suite against a fresh local broker
	$(SC) broker start --port $(PORT) --data-dir $(BROKER_DIR) --fresh
	status=0; $(PY) -m pytest -q -p no:cacheprovider || status=$$?; \
	$(SC) broker stop --port $(PORT) --data-dir $(BROKER_DIR); exit $$status

demo: models broker  ## deploy the OCR cascade and recognise text in sample images
	$(PY) scripts/ocr_demo.py --bootstrap $(BOOTSTRAP)

bench: models broker  ## overhead, ensemble, delivery and soak benchmarks (see benchmarks/README.md)
	$(PY) benchmarks/overhead.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/ensemble.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/delivery.py --bootstrap $(BOOTSTRAP)
	$(PY) benchmarks/soak.py --bootstrap $(BOOTSTRAP)

clean: broker-stop
	rm -rf $(VENV) .streamcompose topologies/models topologies/ocr/samples
