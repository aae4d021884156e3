#!/usr/bin/env bash
# The README's pictures of the real clip: models trained on ../shared/data (Big Buck Bunny and
# four paintings) at 128x72, then the clip rendered at --detail 0, 0.5, 1 and --smooth 0, 0.2, 0.5.
#   bash doc/real_run.sh [WORKDIR]      (about 25 minutes on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=../shared/data
WORK=${1:-/tmp/vae-real}
mkdir -p "$WORK"
$PY extract_tiles.py --out "$WORK/data/tiles.tfrecord.gz" --video $DATA/videos/bigbuckbunny.mp4 \
    --images $DATA/paintings --size 128x72 --frame-step 1 --crops-per-image 64
$PY train_vae.py --data "$WORK/data/*.tfrecord.gz" --logdir "$WORK/log/vae" --steps 1500 --batch-size 32 \
    --codes 256 --kl-weight 0.04 --preview-every 500 --save-every 500
$PY export_graphs.py --vae "$WORK/log/vae" --out "$WORK/models"
$PY train_refiner.py --data "$WORK/data/*.tfrecord.gz" --models "$WORK/models" --logdir "$WORK/log/refiner" \
    --steps 400 --identity-steps 100 --batch-size 32 --filters 16 --blocks 2 --preview-every 200
$PY export_graphs.py --vae "$WORK/log/vae" --refiner "$WORK/log/refiner" --out "$WORK/models"
$PY evaluate_embeddings.py --data "$WORK/data/*.tfrecord.gz" --models "$WORK/models"
$PY -m vae.figures look --input $DATA/videos/bigbuckbunny.mp4 --models "$WORK/models" --work "$WORK/renders" \
    --out doc/look_real --alpha 0.5 --beta 1.0 --frame 60 --all-smooths
