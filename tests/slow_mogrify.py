"""mogrify_video.py with models that cannot keep up: every batch takes SECONDS longer (the live
tests' way to make frames drop). Usage: python tests/slow_mogrify.py SECONDS ARGS..."""
import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vae import mogrify  # noqa: E402

seconds = float(sys.argv.pop(1))
model_step = mogrify.Styler.run


def slow_step(self, frames):
    time.sleep(seconds)
    return model_step(self, frames)


mogrify.Styler.run = slow_step
sys.argv[0] = os.path.join(ROOT, "mogrify_video.py")
runpy.run_path(sys.argv[0], run_name="__main__")
