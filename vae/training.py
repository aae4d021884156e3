"""The training loop both models share: distribution, checkpoints, summaries, previews, signals.

Steps count optimizer updates. A run continues from the latest checkpoint in its logdir and
stops at the total step asked for; SIGINT or SIGTERM saves a checkpoint at the step reached
and exits; a non-finite loss stops the run without saving, so the last good checkpoint stays.
"""
import glob
import json
import os
import shutil
import signal
import tempfile
import time

import numpy as np
import tensorflow as tf

from vae import device, video
from vae.cli import UserError, info, parked_stderr, progress
from vae.images import save_png


def make_strategy(debug_devices=None):
    """MultiWorkerMirroredStrategy under TF_CONFIG, MirroredStrategy on several GPUs, else default.

    Must run before any other TensorFlow op: the multi-worker runtime has to start first.
    """
    if os.environ.get("TF_CONFIG"):
        with parked_stderr():  # device discovery's notes, as in cli.quiet_tensorflow
            return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if debug_devices:  # several logical CPUs: MirroredStrategy without GPUs, for testing
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * debug_devices)
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Only the chief writes what users see: summaries, previews, the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def set_precision(mixed, xla):
    """Mixed precision: float16 on a GPU, bfloat16 on a CPU (where float16 is slow)."""
    import keras
    if mixed:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)
        info(f"mixed precision: {policy}")
    if xla:
        info("XLA: compiling the train step")


def make_optimizer(learning_rate):
    import keras
    optimizer = keras.optimizers.Adam(learning_rate)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def load_config(logdir):
    path = os.path.join(logdir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{logdir}: no training run here (no config.json); train first")
    with open(path) as f:
        return json.load(f)


def save_config(logdir, config, chief):
    """Write the run's settings once; a resumed run must agree with them."""
    path = os.path.join(logdir, "config.json")
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        for key in ("model", "width", "height", "codes"):
            if key in old and old.get(key) != config.get(key):
                raise UserError(f"{logdir} holds a run with {key}={old[key]}, not {config.get(key)}; "
                                "use another --logdir")
        return old
    if chief:
        os.makedirs(logdir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(config, f, indent=2)
        os.replace(path + ".tmp", path)
    return config


def sample_tiles(files, size, counts=None, count=8):
    """Fixed tiles for previews: the first ones of the data, taken round-robin across sources."""
    from vae import records
    by_source = {}
    for batch in records.dataset(files, size, 256, images_only=False, counts=counts).take(4):
        for image, source in zip(batch["image"].numpy(), batch["source"].numpy()):
            by_source.setdefault(source, []).append(image)
    picked = []
    while len(picked) < count and any(by_source.values()):
        for source in sorted(by_source):
            if by_source[source] and len(picked) < count:
                picked.append(by_source[source].pop(0))
    return np.stack(picked)


def image_grid(rows, gap=2):
    """Rows of equally sized float images (each a [N,H,W,3] array) as one uint8 picture."""
    rows = [np.clip(np.asarray(r, np.float32), 0, 1) for r in rows]
    n, h, w, _ = rows[0].shape
    grid = np.ones((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), np.float32)
    for r, row in enumerate(rows):
        for i, image in enumerate(row):
            grid[r * (h + gap):r * (h + gap) + h, i * (w + gap):i * (w + gap) + w] = image
    return (grid * 255 + 0.5).astype(np.uint8)


class Previews:
    """Image summaries of fixed tiles, PNGs in logdir/previews, and logdir/progress.mp4."""

    def __init__(self, logdir, render):
        self.folder = os.path.join(logdir, "previews")
        self.logdir, self.render = logdir, render

    def __call__(self, step, writer):
        grid = self.render()
        with writer.as_default(step=step):
            tf.summary.image("preview", grid[None], step=step)
        os.makedirs(self.folder, exist_ok=True)
        save_png(os.path.join(self.folder, f"step_{step:08d}.png"), grid)
        self.write_progress_video()

    def write_progress_video(self):
        """All previews so far as a short MP4, two frames a second (the original's touch)."""
        import cv2
        paths = sorted(glob.glob(os.path.join(self.folder, "step_*.png")))
        frames = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]
        frames = [f for f in frames if f.shape == frames[-1].shape]
        h, w = frames[-1].shape[:2]
        # H.264 wants even sizes: pad with white.
        frames = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255) for f in frames]
        target = os.path.join(self.logdir, "progress.mp4")
        tmp = target + ".tmp.mp4"
        try:
            video.write_video(tmp, frames, 2, crf=20, preset="veryfast")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class StopRequest:
    """Turns SIGINT and SIGTERM into a flag the loop checks after every step."""

    def __init__(self):
        self.signum = None

    def __enter__(self):
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C: the user insists
            raise KeyboardInterrupt
        self.signum = signum
        info(f"\n{signal.Signals(signum).name}: saving a checkpoint at the current step, then stopping")

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def diverged(logdir, what):
    kept = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints")) or "none yet"
    raise UserError(f"{what}: training diverged and stopped without saving (try a lower --learning-rate); "
                    f"the last good checkpoint is kept: {kept}")


def checkpoint_manager(logdir, checkpoint, step, strategy, chief):
    """The chief saves to LOGDIR/checkpoints. Other workers must save too (saving is
    collective), so they save to a private folder that is removed when they finish."""
    if chief:
        folder = os.path.join(logdir, "checkpoints")
    else:
        folder = tempfile.mkdtemp(prefix=f".worker{strategy.cluster_resolver.task_id}.", dir=logdir)
    return tf.train.CheckpointManager(checkpoint, folder, max_to_keep=3, step_counter=step)


@tf.function
def _all_finite(variables):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])


def train(*, strategy, logdir, total_steps, batches, step_fn, checkpoint, step, optimizer, learning_rate, preview,
          log_every, preview_every, save_every, global_batch, weights):
    """Run step_fn over batches until `step` reaches total_steps. Returns the exit status.

    step_fn(batch) -> dict of per-replica losses; their replica sum is the global mean.
    `weights` are checked to be finite before every save.
    """
    chief = is_chief(strategy)
    manager = checkpoint_manager(logdir, checkpoint, step, strategy, chief)
    try:
        latest = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            info(f"resumed from {latest} at step {int(step.numpy())}")
        # The checkpoint restores the old rate; the one asked for now wins (e.g. lower after divergence).
        optimizer.learning_rate.assign(learning_rate)
        start = int(step.numpy())
        if start >= total_steps:
            info(f"{logdir} is already at step {start} (asked for {total_steps}): nothing to do")
            return 0
        writer = tf.summary.create_file_writer(logdir) if chief else tf.summary.create_noop_writer()
        device.write_summary(writer, start + 1)  # the run's device on record beside its curves

        @tf.function
        def distributed_step(batch):
            losses = strategy.run(step_fn, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in losses.items()}

        iterator = iter(strategy.experimental_distribute_dataset(batches))
        window, window_steps, window_start = {}, 0, time.perf_counter()
        status = 0
        with StopRequest() as stop, progress(total=total_steps, desc="steps", unit="step") as bar:
            bar.update(start)
            for current in range(start + 1, total_steps + 1):
                losses = {k: float(v) for k, v in distributed_step(next(iterator)).items()}
                bad = [k for k, v in losses.items() if not np.isfinite(v)]
                if bad:
                    diverged(logdir, f"{bad[0]} became {losses[bad[0]]} at step {current}")
                step.assign(current)
                for k, v in losses.items():
                    window[k] = window.get(k, 0.0) + v
                window_steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.4g}", refresh=False)
                stopping = stop.signum is not None  # read once: a signal may land mid-iteration
                last = current == total_steps or stopping
                if current % log_every == 0 or last:
                    elapsed = time.perf_counter() - window_start
                    with writer.as_default(step=current):
                        for k, v in window.items():
                            tf.summary.scalar(k, v / window_steps, step=current)
                        tf.summary.scalar("learning_rate", float(optimizer.learning_rate.numpy()), step=current)
                        tf.summary.scalar("tiles_per_second", window_steps * global_batch / max(elapsed, 1e-9),
                                          step=current)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if chief and (current % preview_every == 0 or last):
                    preview(current, writer)
                if current % save_every == 0 or last:
                    if not bool(_all_finite(weights)):
                        diverged(logdir, f"the weights became non-finite at step {current}")
                    manager.save(checkpoint_number=current)
                if stopping:
                    info(f"stopped at step {current}; checkpoint saved in {manager.directory}; "
                         "run the same command again to resume")
                    status = 128 + stop.signum
                    break
        writer.flush()
        return status
    finally:
        if not chief:  # its saves were only for the collective
            shutil.rmtree(manager.directory, ignore_errors=True)
