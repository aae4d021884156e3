"""Memory freed by one batch is kept for the next (vae/memory.py): a process set up as the
scripts set themselves up page-faults far less on a repeated model step and a 720p SSIM than a
plain `import tensorflow` does."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# Page faults over three repeats of each, after one to warm up. A fault is a page of memory the
# process asked the system for again.
PROBE = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[2])
from vae import cli
if sys.argv[1] == "scripts":
    cli.quiet_tensorflow()
import numpy as np
import tensorflow as tf
from vae import measures

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

rng = np.random.default_rng(0)
a = rng.uniform(0, 255, (720, 1280)).astype(np.float32)
b = a[::-1].copy()
x = tf.random.uniform([4, 180, 320, 3])
k1, k2 = tf.random.normal([3, 3, 3, 32]), tf.random.normal([3, 3, 32, 3])
step = tf.function(lambda x: tf.reduce_sum(tf.nn.conv2d(tf.nn.elu(tf.nn.conv2d(x, k1, 1, "SAME")), k2, 1, "SAME")))
counts = {}
for name, fn in (("ssim", lambda: measures.ssim(a, b)), ("model_step", lambda: float(step(x)))):
    fn()
    before = faults()
    for _ in range(3):
        fn()
    counts[name] = faults() - before
print(json.dumps(counts))
"""


def page_faults(how):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPU_ALLOCATOR", "MALLOC_"))}
    out = subprocess.run([sys.executable, "-c", PROBE, how, ROOT], capture_output=True, text=True, check=True,
                         env=env, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="malloc's settings are glibc's")
def test_a_script_process_keeps_freed_memory_for_the_next_batch():
    plain, scripts = page_faults("plain"), page_faults("scripts")
    # A plain process gets its SSIM's temporaries (3.7 MB each) from the system every time.
    assert plain["ssim"] > 5000, plain
    assert scripts["ssim"] < plain["ssim"] / 20, (plain, scripts)
    # TensorFlow's activations (29 MB for this step) are kept by its own allocator.
    assert scripts["model_step"] < plain["model_step"] / 2, (plain, scripts)
