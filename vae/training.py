"""One training run for any model: strategy, data, precision, XLA, checkpoints, summaries,
previews, signals and the divergence guard. A model type (vae/kinds) brings a Spec (vae/model.py,
vae/refiner.py, vae/style.py): its networks, optimizers, step and preview; `run` keeps them in a
TrainState of named parts (big_vision's train state: another model or optimizer is one more key)
and does the rest.

Steps count optimizer updates. A run continues from the latest checkpoint in its logdir and
stops at the total step asked for; SIGINT or SIGTERM saves a checkpoint at the step reached
and exits; a non-finite loss stops the run without saving, so the last good checkpoint stays.
"""
import contextlib
import dataclasses
import glob
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

import cv2
import keras
import numpy as np
import tensorflow as tf

from vae import device, encode, images, records
from vae.cli import StopRequest, UserError, info, parked_stderr, progress


# --- distribution ----------------------------------------------------------------------

def make_strategy(debug_devices=None):
    """MultiWorkerMirroredStrategy under TF_CONFIG, MirroredStrategy on several GPUs, else default.

    Must run before any other TensorFlow op: the multi-worker runtime has to start first.
    """
    if os.environ.get("TF_CONFIG"):
        wait_for_peers(cluster_addresses())
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


def cluster_addresses():
    """(this task's address, {'worker 1': address, ...} of the others) from TF_CONFIG."""
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        me = (config["task"]["type"], int(config["task"]["index"]))
        tasks = {(kind, i): address for kind, addresses in config["cluster"].items()
                 for i, address in enumerate(addresses)}
        mine = tasks.pop(me)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise UserError(f"TF_CONFIG is not a valid cluster description ({e})")
    return mine, {f"{kind} {i}": address for (kind, i), address in sorted(tasks.items())}


def _answers(address, timeout=1.0):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_peers(cluster, poll=0.5):
    """Wait, in Python, until every other task of the cluster answers on its port.

    TensorFlow's own wait for the cluster blocks in C++ holding the GIL: no message, and
    Ctrl-C and SIGTERM go unheard until it ends. So each task first listens on its own port
    with a plain socket (peers see it is up), waits here where signals work, then frees the
    port for TensorFlow's server, which peers that already saw us reach just as well.
    """
    mine, peers = cluster
    host, port = mine.rsplit(":", 1)
    try:
        listener = socket.create_server(("", int(port)))
    except OSError as e:
        raise UserError(f"cannot listen on {mine} (this task's address in TF_CONFIG): {e.strerror}")
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    said, missing = None, dict(peers)
    try:
        started = time.monotonic()
        while True:
            missing = {name: address for name, address in peers.items() if not _answers(address)}
            if not missing:
                break
            if time.monotonic() - started > 2 and missing != said:
                waiting = ", ".join(f"{name} at {address}" for name, address in missing.items())
                info(f"waiting for {waiting} (from TF_CONFIG); Ctrl-C to stop")
                said = missing
            time.sleep(poll)
    except KeyboardInterrupt:
        waiting = ", ".join(f"{name} at {address}" for name, address in missing.items())
        print(f"error: stopped while waiting for {waiting}", file=sys.stderr, flush=True)
        sys.exit(130)
    finally:
        listener.close()
        signal.signal(signal.SIGTERM, previous)


def lost_peers_error(error):
    """A collective failed: name the workers that no longer answer, instead of gRPC's text."""
    _, peers = cluster_addresses()
    lost = [f"{name} at {address}" for name, address in peers.items() if not _answers(address)]
    if lost:
        return UserError(f"lost {', '.join(lost)}: it stopped answering, so training stopped "
                         "(the last checkpoint is kept; start all workers again to resume)")
    return UserError(f"the cluster failed: {error.message.splitlines()[0]}")


def is_chief(strategy):
    """Only the chief writes what users see: summaries, previews, the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def checkpoint_manager(logdir, checkpoint, step, strategy, chief):
    """The chief saves to LOGDIR/checkpoints. Other workers must save too (saving is
    collective), so they save to a private folder that is removed when they finish."""
    if chief:
        folder = os.path.join(logdir, "checkpoints")
    else:
        os.makedirs(logdir, exist_ok=True)  # a worker's own logdir, on a machine of its own, may be new
        folder = tempfile.mkdtemp(prefix=f".worker{strategy.cluster_resolver.task_id}.", dir=logdir)
    return tf.train.CheckpointManager(checkpoint, folder, max_to_keep=3, step_counter=step)


def take_chief_state(strategy, variables):
    """Every worker continues from the chief's state: workers without shared storage have no
    checkpoint of their own to restore. One all-reduce in which only the chief contributes."""
    chief = float(is_chief(strategy))

    @tf.function
    def sync():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            return [context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(v, tf.float64) * chief)
                    for v in variables]
        values = strategy.run(replica_fn)
        for v, value in zip(variables, values):
            v.assign(tf.cast(strategy.experimental_local_results(value)[0], v.dtype))

    sync()


# --- previews and signals --------------------------------------------------------------

def sample_tiles(files, size, count=8, scan=256):
    """Fixed tiles for previews: among the first `scan` tiles (shuffled at extraction), the
    first ones of each source in turn. Stops quietly at damage, which training warns about."""
    serialized = []
    for number, path in enumerate(files, 1):
        wanted = scan * number // len(files) - len(serialized)
        reader = tf.data.TFRecordDataset(path, compression_type=records.COMPRESSION).ignore_errors()
        serialized += [record.numpy() for record in reader.take(max(wanted, 0))]
    batch = records.parse_batch(tf.constant(serialized), size)
    by_source = {}
    for image, source in zip(batch["image"].numpy(), batch["source"].numpy()):
        by_source.setdefault(source, []).append(image)
    picked = []
    while len(picked) < count and any(by_source.values()):
        for source in sorted(by_source):
            if by_source[source] and len(picked) < count:
                picked.append(by_source[source].pop(0))
    return np.stack(picked)


class Previews:
    """Image summaries of fixed tiles, PNGs in logdir/previews, and logdir/progress.mp4."""

    def __init__(self, logdir, render):
        self.folder = os.path.join(logdir, "previews")
        self.logdir, self.render = logdir, render

    def __call__(self, step, writer):
        grid = images.grid(self.render())
        with writer.as_default(step=step):
            tf.summary.image("preview", grid[None], step=step)
        os.makedirs(self.folder, exist_ok=True)
        images.save_png(os.path.join(self.folder, f"step_{step:08d}.png"), grid)
        self.write_progress_video()

    def write_progress_video(self):
        """All previews so far as a short MP4, two frames a second (the original's touch)."""
        paths = sorted(glob.glob(os.path.join(self.folder, "step_*.png")))
        frames = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]
        frames = [f for f in frames if f.shape == frames[-1].shape]
        h, w = frames[-1].shape[:2]
        # H.264 wants even sizes: pad with white.
        frames = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255) for f in frames]
        target = os.path.join(self.logdir, "progress.mp4")
        tmp = target + ".tmp.mp4"
        try:
            encode.write_video(tmp, frames, 2, crf=20, preset="veryfast")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def diverged(logdir, what):
    kept = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints")) or "none yet"
    raise UserError(f"{what}: training diverged and stopped without saving (try a lower --learning-rate); "
                    f"the last good checkpoint is kept: {kept}")


# --- the run ---------------------------------------------------------------------------

def set_precision(mixed):
    """Mixed precision: float16 on a GPU, bfloat16 on a CPU (where float16 is slow)."""
    if mixed:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)
        info(f"mixed precision: {policy}")


def make_optimizer(learning_rate):
    optimizer = keras.optimizers.Adam(learning_rate)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def optimizer_key(name):
    """The checkpoint's name for the optimizer of model `name`: `optimizer` for the main model,
    as checkpoints before the train state had it."""
    return "optimizer" if name == "model" else f"{name}_optimizer"


def restore(checkpoint, path, logdir, partial=False):
    """Restore a checkpoint into `checkpoint`'s objects, every one of which must find its values
    there: a changed layout is an error naming the logdir, never random weights. `partial`:
    values the objects do not use (an optimizer's, when exporting) are fine."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        reason = (getattr(e, "message", None) or str(e)).strip().splitlines()[0][:200]
        raise UserError(f"{logdir}: its checkpoint does not fit the model its config.json describes "
                        f"({reason}); was config.json edited, or the run written by other code?") from e
    if partial:
        status.expect_partial()
    return status


class TrainState:
    """The named parts of a run: models and their optimizers (one each, by the model's name),
    the step, and the first step whose loss was not finite. It owns what concerns all of them:
    the checkpoint (each part under its name), the one update helper, the chief's state sync,
    the finite checks and the learning rates."""

    def __init__(self, models, optimizers, seed=0):
        self.models, self.optimizers = dict(models), dict(optimizers)
        for name, optimizer in self.optimizers.items():
            optimizer.build(self.models[name].trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # Read on the host only where the loop waits for the device anyway (logs, previews,
        # saves), so the device runs ahead between.
        self.bad_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_step")
        self.seed = seed
        parts = {**self.models, **{optimizer_key(n): o for n, o in self.optimizers.items()}}
        self.checkpoint = tf.train.Checkpoint(step=self.step, **parts)

    def draw_seed(self, purpose):
        """A seed for one stateless random draw of a spec's step (crops, strengths): a function
        of the run's seed, the step and the replica, so that a resumed run draws what an
        uninterrupted one would, and replicas draw apart. `purpose` (a small int) tells the
        draws of one step apart."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.stack([tf.cast(self.seed * 1000 + purpose, tf.int64),
                         self.step * 1024 + tf.cast(replica, tf.int64)])

    def update(self, name, tape, loss):
        """One optimizer step of model `name` on `loss`, this replica's batch mean."""
        optimizer, variables = self.optimizers[name], self.models[name].trainable_variables
        scaled = optimizer.scale_loss(loss)
        # The optimizer sums the replicas' gradients, so dividing here makes the sum the
        # gradient of the global mean.
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        # A variable that the loss does not reach gets a zero gradient (Adam leaves it be).
        gradients = [tf.zeros_like(v) if g is None else g / replicas
                     for g, v in zip(tape.gradient(scaled, variables), variables)]
        optimizer.apply_gradients(zip(gradients, variables))

    @property
    def variables(self):
        """Everything a worker must share with the chief."""
        out = [self.step]
        for name, net in self.models.items():
            out += net.variables
        for optimizer in self.optimizers.values():
            out += optimizer.variables
        return out

    def all_finite(self):
        return bool(_all_finite([w for net in self.models.values() for w in net.weights]))

    def learning_rate_tags(self):
        return {name: "learning_rate" if name == "model" else f"{name}_learning_rate" for name in self.optimizers}

    def learning_rates(self):
        """{TensorBoard tag: the current rate} of every optimizer."""
        return {tag: float(self.optimizers[name].learning_rate.numpy())
                for name, tag in self.learning_rate_tags().items()}

    def set_learning_rates(self, rates):
        for name, rate in rates.items():
            self.optimizers[name].learning_rate.assign(rate)


class Trainer:
    """The train step of any spec: uint8 tiles in, made float on the device; the spec's update;
    the losses kept in keras.metrics.Mean trackers until the loop logs them."""

    def __init__(self, spec, state, config):
        self.spec, self.state, self.config = spec, state, config
        self.trackers = {name: keras.metrics.Mean(name=name) for name in spec.tracked}

    def step(self, batch):
        batch = tf.nest.map_structure(lambda tiles: tf.cast(tiles, tf.float32) / 255.0, batch)
        losses = self.spec.train_step(self.state, batch, self.config)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in losses.values()])
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return finite

    @property
    def metrics(self):
        return list(self.trackers.values())


@tf.function
def _all_finite(variables):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables if v.dtype.is_floating])


def learning_rates(plan, optimizers):
    """{model name: rate} asked for by this run: its learning rate for "model", and for the
    others what the spec set from its config (the optimizers' initial rates)."""
    return {name: plan.run.learning_rate if name == "model" else float(optimizer.learning_rate.numpy())
            for name, optimizer in optimizers.items()}


def run(plan):
    """Train a new Spec of the plan's kind on its record files until its step count; returns the
    exit status. `plan`: a run_config.Plan, checked before TensorFlow loaded."""
    settings = plan.run
    strategy = make_strategy(settings.cpu_replicas)  # before any other TensorFlow op
    chief = is_chief(strategy)
    width, height = records.tile_size(plan.files)
    config = plan.config(width, height)
    spec = plan.kind.spec()
    keras.utils.set_random_seed(settings.seed)
    set_precision(settings.mixed_precision)
    device.report(keras.mixed_precision.global_policy().name, settings.xla, settings.batch_size)
    with strategy.scope():
        models = spec.build(config, plan)
        optimizers = spec.optimizers(models, config, plan)
        state = TrainState(models, optimizers, seed=settings.seed)
        trainer = Trainer(spec, state, config)
    if chief:
        os.makedirs(plan.logdir, exist_ok=True)
        plan.save(config, spec.notes)
    info(f"training {spec.describe(config, plan)} on {width}x{height} tiles from {len(plan.files)} file(s), "
         f"{strategy.num_replicas_in_sync} replica(s)" + (", XLA" if settings.xla else ""))
    samples = sample_tiles(plan.files, (width, height)) if chief else None

    def replica_step(tiles):
        return tf.cast(tf.logical_not(trainer.step(tiles)), tf.int32)  # 1 where a loss is not finite

    replica_step = tf.function(replica_step, jit_compile=True) if settings.xla else replica_step

    @tf.function
    def distributed_step(tiles):
        failed = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(tiles,)), axis=None)
        state.step.assign_add(1)
        state.bad_step.assign(tf.where((failed > 0) & (state.bad_step == 0), state.step, state.bad_step))

    loop = Loop(plan, strategy, chief, state, trainer, distributed_step,
                batches=spec.dataset(plan, (width, height), config),
                manager=checkpoint_manager(plan.logdir, state.checkpoint, state.step, strategy, chief),
                preview=Previews(plan.logdir, lambda: spec.preview(state.models, samples)),
                rates=learning_rates(plan, optimizers))
    multi_worker = bool(os.environ.get("TF_CONFIG"))
    # A lost peer makes every collective print gRPC's errors from C++; the one line we print
    # below says what happened (--debug shows them).
    quiet = parked_stderr(show_on_error=plan.debug) if multi_worker else contextlib.nullcontext()
    try:
        with quiet:
            return loop.run()
    except tf.errors.OpError as e:
        if multi_worker and isinstance(e, (tf.errors.UnavailableError, tf.errors.CancelledError,
                                           tf.errors.DeadlineExceededError, tf.errors.InternalError,
                                           tf.errors.AbortedError)):
            raise lost_peers_error(e) from e
        raise
    finally:
        if not chief:  # its saves were only for the collective
            shutil.rmtree(loop.manager.directory, ignore_errors=True)


@dataclasses.dataclass
class Loop:
    """The steps of one run, from the latest checkpoint to the plan's step count: the parts
    `run` put together, and what happens at each step (log, preview, save, stop)."""
    plan: object
    strategy: object
    chief: bool
    state: TrainState
    trainer: Trainer
    distributed_step: object
    batches: object
    manager: object
    preview: object
    rates: dict

    def diverged_if_bad(self):
        bad = int(self.state.bad_step.numpy())
        if bad:
            diverged(self.plan.logdir, f"the loss became non-finite at step {bad}")

    def resume(self):
        """The step to go on from: the latest checkpoint's (the chief's, for every worker)."""
        state, logdir = self.state, self.plan.logdir
        latest = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
        if latest:
            restore(state.checkpoint, latest, logdir)
            info(f"resumed from {latest} at step {int(state.step.numpy())}")
        if os.environ.get("TF_CONFIG"):
            take_chief_state(self.strategy, state.variables)
        # The checkpoint restores the old rates; the ones asked for now win (e.g. lower after divergence).
        state.set_learning_rates(self.rates)
        return int(state.step.numpy())

    def log(self, writer, current, window_steps, elapsed):
        # The only place the losses come to the host: the trackers' means since the last log.
        means = {m.name: float(m.result()) for m in self.trainer.metrics}
        with writer.as_default(step=current):
            for name, value in {**means, **self.state.learning_rates()}.items():
                tf.summary.scalar(name, value, step=current)
            tf.summary.scalar("tiles_per_second", window_steps * self.plan.run.batch_size / max(elapsed, 1e-9),
                              step=current)
        for m in self.trainer.metrics:
            m.reset_state()
        return means

    def run(self):
        settings, logdir, state = self.plan.run, self.plan.logdir, self.state
        start = self.resume()
        if start >= settings.steps:
            info(f"{logdir} is already at step {start} (asked for {settings.steps}): nothing to do")
            return 0
        writer = tf.summary.create_file_writer(logdir) if self.chief else tf.summary.create_noop_writer()
        device.write_summary(writer, start + 1)  # the run's device on record beside its curves
        iterator = iter(self.strategy.experimental_distribute_dataset(self.batches))
        window_steps, window_start = 0, time.perf_counter()
        status = 0
        def saying(signum):
            info(f"\n{signal.Signals(signum).name}: saving a checkpoint at the current step, then stopping")

        with StopRequest(saying) as stop, progress(total=settings.steps, desc="steps", unit="step") as bar:
            bar.update(start)
            for current in range(start + 1, settings.steps + 1):
                self.distributed_step(next(iterator))
                window_steps += 1
                bar.update(1)
                stopping = stop.signum is not None  # read once: a signal may land mid-iteration
                last = current == settings.steps or stopping
                log, show, save = (current % every == 0 or last
                                   for every in (settings.log_every, settings.preview_every, settings.save_every))
                if log or show or save:  # on every worker alike: the flag is the same on all
                    self.diverged_if_bad()
                if log:
                    means = self.log(writer, current, window_steps, time.perf_counter() - window_start)
                    bar.set_postfix(loss=f"{means['loss']:.4g}", refresh=False)
                    window_steps, window_start = 0, time.perf_counter()
                if self.chief and show:
                    self.preview(current, writer)
                if save:
                    if not state.all_finite():
                        diverged(logdir, f"the weights became non-finite at step {current}")
                    self.manager.save(checkpoint_number=current)
                if stopping:
                    info(f"stopped at step {current}; checkpoint saved in {self.manager.directory}; "
                         "run the same command again to resume")
                    status = 128 + stop.signum
                    break
        writer.flush()
        print(f"{logdir}: step {int(state.step.numpy())} of {settings.steps}")
        return status

