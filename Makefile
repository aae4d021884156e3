# make demo: the whole pipeline on a real clip and paintings (data/demo/) at a small size, on the CPU, in minutes.
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
# The demo's media, shipped in the repo (data/demo/README.md: what each is, its origin and licence).
DEMO_MEDIA := data/demo
DEMO_STYLE ?= wave
DEMO_SIZE ?= 64x36
DEMO_STEPS ?= 800
DEMO_REFINER_STEPS ?= 200
# Training sees the clip's first DEMO_CUT seconds; the rest is held out and rendered.
DEMO_CUT ?= 3.6
# The demo trains a spatial VAE (codes as a map, --latent spatial) on tiles cut at the scale it
# renders (frames at half size, 320x180; paintings with their shorter side 180 pixels), and paints
# the held-out part with the Wave's own codes (--match). DEMO_LATENT=global runs the original
# instead: whole frames and paintings shrunk to one tile, a global VAE and its refiner, --detail 1
# (its code is a blur at tile size; the input's own picture carries the shapes).
DEMO_LATENT ?= spatial
ifeq ($(DEMO_LATENT),global)
DEMO_TILE_ARGS := --crops-per-image 16
DEMO_VAE_ARGS := --codes 128 --kl-weight 0.04
DEMO_DETAIL ?= 1
DEMO_LOOK_ARGS := --detail $(DEMO_DETAIL)
else
DEMO_TILE_ARGS := --video-scale 0.5 --crops-per-frame 4 --image-side 180 --crops-per-image 100
DEMO_VAE_ARGS := --latent spatial
# Half the input's own picture kept (--detail 0.5), the codes all matched to the Wave's own
# (--match 1) and steadied (--smooth 0.5): the Wave's colours and marks, the bunny recognisable.
DEMO_DETAIL ?= 0.5
DEMO_MATCH ?= 1
DEMO_SMOOTH ?= 0.5
DEMO_LOOK_ARGS := --detail $(DEMO_DETAIL) --match $(DEMO_MATCH) --smooth $(DEMO_SMOOTH)
endif
# A frame of the held-out part (1.7 s, 42 frames) for the pictures.
DEMO_FRAME ?= 20
# The bundled ffmpeg (imageio-ffmpeg), found when the recipe runs, after the install.
FFMPEG = "$$($(PY) -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" -v error -y

.PHONY: demo test bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt $(TF_REQUIREMENT)
	touch $@

# One pytest worker more than the cores. Most tests run scripts in subprocesses, and the live
# tests wait on streams in real time, when a worker's core would idle: on 2 cores, 3 workers
# took the suite from 917 s to 859 s, the CPU busy 196 % of the time.
TEST_WORKERS = $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else os.cpu_count() + 1)')
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15 tests

demo: $(STAMP)
	rm -rf $(DEMO)/log $(DEMO)/models $(DEMO)/media $(DEMO)/data $(DEMO)/renders
	mkdir -p $(DEMO)/media
	$(FFMPEG) -i $(DEMO_MEDIA)/bigbuckbunny.mp4 -t $(DEMO_CUT) -an -c:v libx264 -crf 12 $(DEMO)/media/train.mp4
	$(FFMPEG) -ss $(DEMO_CUT) -i $(DEMO_MEDIA)/bigbuckbunny.mp4 -c:v libx264 -crf 12 -c:a aac -b:a 96k \
		$(DEMO)/media/heldout.mp4
	$(PY) extract_tiles.py --out $(DEMO)/data/tiles.tfrecord.gz --video $(DEMO)/media/train.mp4 \
		$(foreach p,$(sort $(wildcard $(DEMO_MEDIA)/paintings/*)),--images $(p)) --size $(DEMO_SIZE) --frame-step 1 \
		$(DEMO_TILE_ARGS)
	$(PY) preview_tiles.py --data '$(DEMO)/data/*.tfrecord.gz' --out $(DEMO)/tiles.png
	$(PY) train_vae.py --data '$(DEMO)/data/*.tfrecord.gz' --logdir $(DEMO)/log/vae --steps $(DEMO_STEPS) \
		--batch-size 32 $(DEMO_VAE_ARGS) --preview-every 100 --save-every 200
	$(PY) export_graphs.py --vae $(DEMO)/log/vae --out $(DEMO)/models
ifeq ($(DEMO_LATENT),global)
	$(PY) train_refiner.py --data '$(DEMO)/data/*.tfrecord.gz' --models $(DEMO)/models --logdir $(DEMO)/log/refiner \
		--steps $(DEMO_REFINER_STEPS) --identity-steps 50 --batch-size 32 --filters 16 --blocks 2 --preview-every 100
	$(PY) export_graphs.py --vae $(DEMO)/log/vae --refiner $(DEMO)/log/refiner --out $(DEMO)/models
endif
	$(PY) evaluate_embeddings.py --data '$(DEMO)/data/*.tfrecord.gz' --models $(DEMO)/models --report $(DEMO)/report \
		--style $(DEMO_STYLE)
	$(PY) mogrify_video.py $(DEMO)/media/heldout.mp4 $(DEMO)/styled.mp4 --models $(DEMO)/models --style $(DEMO_STYLE) \
		--alpha 0.25 --beta 1 $(DEMO_LOOK_ARGS) --inset --stats $(DEMO)/styled.json
	$(PY) -m vae.figures training --logdir $(DEMO)/log/vae --before $(DEMO)/media/heldout.mp4 --after $(DEMO)/styled.mp4 \
		--frame $(DEMO_FRAME) --out $(DEMO)/pictures
	$(PY) -m vae.figures look --input $(DEMO)/media/heldout.mp4 --models $(DEMO)/models --work $(DEMO)/renders \
		--out $(DEMO)/look --frame $(DEMO_FRAME) --style $(DEMO_STYLE) --alpha 0.25 --beta 1 \
		$(if $(DEMO_MATCH),--match $(DEMO_MATCH))
	@echo
	@echo "demo done ($(DEMO_LATENT) codes; make demo DEMO_LATENT=global for the original's):"
	@echo "  trained on        $(DEMO)/media/train.mp4 (Big Buck Bunny's first $(DEMO_CUT) s) and $(DEMO_MEDIA)/paintings/"
	@echo "  styled video      $(DEMO)/styled.mp4 (the held-out rest, never seen in training, toward '$(DEMO_STYLE)',"
	@echo "                    with its sound and the original in the corner; measures in $(DEMO)/styled.json)"
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
