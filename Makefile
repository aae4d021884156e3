# make demo: the whole pipeline on synthetic media at a small size, on the CPU, in minutes.
# make test: the test suite. Both create .venv and install requirements.txt when needed.
# GPU=1 (make demo GPU=1): install TensorFlow with its CUDA libraries, for an NVIDIA card on Linux.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GPU ?=
# requirements.txt stays the CPU default; the GPU build adds the CUDA extra on the same command line,
# so pip resolves one TensorFlow for both. A stamp of its own makes GPU=1 after a CPU install reinstall.
TF_REQUIREMENT := $(if $(filter 1,$(GPU)),'tensorflow[and-cuda]')
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)
DEMO := demo
DEMO_SIZE ?= 64x36
DEMO_STEPS ?= 800
DEMO_REFINER_STEPS ?= 200
# The demo trains a spatial VAE (codes as a map, --latent spatial): it renders the clip at its own
# size, so every shape stays recognisable with the shift alone (--detail 0), where the original's
# global code is a blur at tile size that needs --detail 1 to look like the input at all
# (the README's real-footage table has both). DEMO_LATENT=global runs the original instead.
DEMO_LATENT ?= spatial
ifeq ($(DEMO_LATENT),global)
DEMO_VAE_ARGS := --codes 128 --kl-weight 0.04
DEMO_DETAIL ?= 1
else
DEMO_VAE_ARGS := --latent spatial --kl-weight 0.05 --learning-rate 1e-3
DEMO_DETAIL ?= 0
endif

.PHONY: demo test bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt $(TF_REQUIREMENT)
	touch $@

# -n auto: one pytest worker per core. Most tests run scripts in subprocesses, and each script's
# start-up (importing TensorFlow) keeps one core busy: two workers keep two busy.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal tests

demo: $(STAMP)
	rm -rf $(DEMO)/log $(DEMO)/models
	$(PY) -m vae.synthetic --out $(DEMO)/media --frames 200
	$(PY) extract_tiles.py --out $(DEMO)/data/tiles.tfrecord.gz --video $(DEMO)/media/clip.mp4 \
		--images $(DEMO)/media/paintings --size $(DEMO_SIZE) --frame-step 1 --crops-per-image 16
	$(PY) preview_tiles.py --data '$(DEMO)/data/*.tfrecord.gz' --out $(DEMO)/tiles.png
	$(PY) train_vae.py --data '$(DEMO)/data/*.tfrecord.gz' --logdir $(DEMO)/log/vae --steps $(DEMO_STEPS) \
		--batch-size 32 $(DEMO_VAE_ARGS) --preview-every 100 --save-every 200
	$(PY) export_graphs.py --vae $(DEMO)/log/vae --out $(DEMO)/models
ifeq ($(DEMO_LATENT),global)
	$(PY) train_refiner.py --data '$(DEMO)/data/*.tfrecord.gz' --models $(DEMO)/models --logdir $(DEMO)/log/refiner \
		--steps $(DEMO_REFINER_STEPS) --identity-steps 50 --batch-size 32 --filters 16 --blocks 2 --preview-every 100
	$(PY) export_graphs.py --vae $(DEMO)/log/vae --refiner $(DEMO)/log/refiner --out $(DEMO)/models
endif
	$(PY) evaluate_embeddings.py --data '$(DEMO)/data/*.tfrecord.gz' --models $(DEMO)/models --report $(DEMO)/report
	$(PY) mogrify_video.py $(DEMO)/media/clip.mp4 $(DEMO)/styled.mp4 --models $(DEMO)/models --alpha 0.5 --beta 1.0 \
		--detail $(DEMO_DETAIL) --inset --stats $(DEMO)/styled.json
	$(PY) -m vae.figures training --logdir $(DEMO)/log/vae --before $(DEMO)/media/clip.mp4 --after $(DEMO)/styled.mp4 \
		--out $(DEMO)/pictures
	$(PY) -m vae.figures look --input $(DEMO)/media/clip.mp4 --models $(DEMO)/models --work $(DEMO)/renders \
		--out $(DEMO)/look --frame 100
	@echo
	@echo "demo done ($(DEMO_LATENT) codes; make demo DEMO_LATENT=global for the original's):"
	@echo "  styled video      $(DEMO)/styled.mp4 (with the input's sound and the original in the corner)"
	@echo "  contact sheet     $(DEMO)/tiles.png"
	@echo "  training previews $(DEMO)/log/vae/previews/ and $(DEMO)/log/vae/progress.mp4"
	@echo "  report pictures   $(DEMO)/report/"
	@echo "  loss, before/after $(DEMO)/pictures/"
	@echo "  the look          $(DEMO)/look/look.png and measures.md (--detail 0, 0.5, 1; colour, texture, flicker)"
	@echo "  curves            $(VENV)/bin/tensorboard --logdir $(DEMO)/log"

clean:
	rm -rf $(DEMO)

bench: $(STAMP)
	$(PY) bench/benchmark.py
