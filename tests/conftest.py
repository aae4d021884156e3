"""Shared fixtures: synthetic media made once per session, and running scripts as a user does."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TILE = (64, 36)


def run_script(script, *args, check=True, timeout=600, env=None):
    """Run one of the project's scripts in a subprocess; return the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def assert_one_line_error(result, *fragments):
    """The contract's failure: non-zero status, one `error:` line naming the problem, no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Synthetic paintings and a letterboxed clip with audio."""
    from vae import synthetic
    folder = tmp_path_factory.mktemp("media")
    paintings = folder / "paintings"
    synthetic.write_paintings(str(paintings), count=8, seed=1)
    clip = synthetic.write_video(str(folder / "clip.mp4"), seed=1, width=160, height=90, frames=40,
                                 letterbox=10, audio=True)
    return {"folder": folder, "paintings": paintings, "clip": clip}


@pytest.fixture(scope="session")
def tiles(media, tmp_path_factory):
    """Records extracted from the synthetic media at the test tile size."""
    out = tmp_path_factory.mktemp("data") / "tiles.tfrecord.gz"
    run_script("extract_tiles.py", "--out", out, "--video", media["clip"], "--images", media["paintings"],
               "--size", f"{TILE[0]}x{TILE[1]}", "--frame-step", 1, "--crops-per-image", 5)
    return out
