# make demo: the whole pipeline on synthetic media at a small size, on the CPU, in minutes.
# make test: the test suite. Both create .venv and install requirements.txt when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo
DEMO_SIZE ?= 64x36
DEMO_STEPS ?= 600

.PHONY: demo test bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m vae.synthetic --out $(DEMO)/media
	$(PY) extract_tiles.py --out $(DEMO)/data/tiles.tfrecord.gz --video $(DEMO)/media/clip.mp4 \
		--images $(DEMO)/media/paintings --size $(DEMO_SIZE) --frame-step 1 --crops-per-image 8
	$(PY) preview_tiles.py --data '$(DEMO)/data/*.tfrecord.gz' --out $(DEMO)/tiles.png
	@echo "demo: tiles in $(DEMO)/data, contact sheet $(DEMO)/tiles.png; training and rendering come with the next stages"

clean:
	rm -rf $(DEMO)
