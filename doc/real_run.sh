#!/usr/bin/env bash
# The README's real-footage study: Big Buck Bunny's first 3.6 s and The Great Wave (one coherent
# style, many crops) train a global VAE with its plain refiner, a spatial VAE, and a style refiner
# on the spatial one; the last 1.7 s, which no model sees, are then rendered every way the README
# compares, beside two plain filters, and measured (doc/study.py writes doc/real_table.md and
# doc/real_look.png).
#   bash doc/real_run.sh [WORKDIR]     (about an hour and a quarter on a 2-core CPU at the defaults)
# On a GPU, larger settings run unchanged, e.g.:
#   SIZE=320x180 VAE_STEPS=20000 SPATIAL_STEPS=20000 STYLE_STEPS=20000 BATCH=64 \
#   STYLE_ARGS='--batch-size 16' bash doc/real_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make .venv/.installed  # the same set-up as make demo and make test
PY=.venv/bin/python
DATA=../shared/data
WORK=${1:-/tmp/vae-real}
SIZE=${SIZE:-128x72}
VAE_STEPS=${VAE_STEPS:-1200}
SPATIAL_STEPS=${SPATIAL_STEPS:-1500}
STYLE_STEPS=${STYLE_STEPS:-1200}
BATCH=${BATCH:-32}
# The style refiner's size: small enough for about 1 step/s on a 2-core CPU.
STYLE_ARGS=${STYLE_ARGS:---filters 16 --blocks 3 --disc-filters 32 --batch-size 8}
CLIP=$DATA/videos/bigbuckbunny.mp4
mkdir -p "$WORK/wave" "$WORK/media"
FFMPEG=$($PY -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
# Held out: frames from 3.6 s on are never seen in training (re-encoded, so the cut is exact).
[ -f "$WORK/media/train.mp4" ] || $FFMPEG -v error -y -i $CLIP -t 3.6 -c:v libx264 -crf 12 -c:a aac "$WORK/media/train.mp4"
[ -f "$WORK/media/heldout.mp4" ] || $FFMPEG -v error -y -ss 3.6 -i $CLIP -c:v libx264 -crf 12 -c:a aac "$WORK/media/heldout.mp4"
cp -f $DATA/paintings/wave.jpg "$WORK/wave/"
[ -f "$WORK/data/tiles.json" ] || $PY extract_tiles.py --out "$WORK/data/tiles.tfrecord.gz" --video "$WORK/media/train.mp4" \
    --images "$WORK/wave" --size $SIZE --frame-step 1 --crops-per-image 400
TILES="$WORK/data/*.tfrecord.gz"

# The spatial VAE, then the style refiner on it (trained toward the Wave's patches).
$PY train_vae.py --data "$TILES" --logdir "$WORK/log/spatial" --latent spatial --steps $SPATIAL_STEPS \
    --batch-size $BATCH --kl-weight 0.05 --learning-rate 1e-3 --preview-every 500 --save-every 500
$PY export_graphs.py --vae "$WORK/log/spatial" --out "$WORK/spatial"
$PY evaluate_embeddings.py --data "$TILES" --models "$WORK/spatial"
$PY train_refiner.py --data "$TILES" --models "$WORK/spatial" --logdir "$WORK/log/style" --style wave \
    --steps $STYLE_STEPS --identity-steps 200 $STYLE_ARGS --preview-every 200 --save-every 200
mkdir -p "$WORK/styled" && cp "$WORK/spatial/"*.json "$WORK/spatial/"*.npz "$WORK/styled/"
$PY export_graphs.py --vae "$WORK/log/spatial" --refiner "$WORK/log/style" --out "$WORK/styled"
# The same with a looser layout term and a stronger adversarial one: more paint, less structure.
$PY train_refiner.py --data "$TILES" --models "$WORK/spatial" --logdir "$WORK/log/style_b" --style wave \
    --steps $STYLE_STEPS --identity-steps 200 $STYLE_ARGS --content-pool 8 --content-weight 0.5 \
    --adversarial-weight 2 --preview-every 400 --save-every 400
mkdir -p "$WORK/styled_b" && cp "$WORK/spatial/"*.json "$WORK/spatial/"*.npz "$WORK/styled_b/"
$PY export_graphs.py --vae "$WORK/log/spatial" --refiner "$WORK/log/style_b" --out "$WORK/styled_b"

# The original: a global VAE and its plain refiner.
$PY train_vae.py --data "$TILES" --logdir "$WORK/log/vae" --steps $VAE_STEPS --batch-size $BATCH \
    --codes 256 --kl-weight 0.04 --preview-every 500 --save-every 500
$PY export_graphs.py --vae "$WORK/log/vae" --out "$WORK/global"
$PY train_refiner.py --data "$TILES" --models "$WORK/global" --logdir "$WORK/log/refiner" \
    --steps 400 --identity-steps 100 --batch-size $BATCH --filters 16 --blocks 2 --preview-every 200
$PY export_graphs.py --vae "$WORK/log/vae" --refiner "$WORK/log/refiner" --out "$WORK/global"
$PY evaluate_embeddings.py --data "$TILES" --models "$WORK/global"

$PY doc/study.py --input "$WORK/media/heldout.mp4" --work "$WORK/renders" --global "$WORK/global" \
    --spatial "$WORK/spatial" --styled "$WORK/styled" --styled-loose "$WORK/styled_b" --style wave --painting $DATA/paintings/wave.jpg --out doc
