#!/usr/bin/env python3
"""Measure the pipeline against this machine's own limits and print a table (and write JSON).

    python bench/benchmark.py [--json bench/results.json] [--size 320x180] [--quick]
    python bench/benchmark.py --live   # 60 s of a 640x360 udp stream through mogrify_video.py --live
    python bench/benchmark.py --startup   # live start-up beside `import tensorflow`; mogrify plain and --detail 1
    python bench/benchmark.py --render   # mogrify end to end against the batched rate, plain and --detail 1

Figures are ratios to what the same machine does in the same run (float32 matmul FLOP/s,
batched model frames/s, ffmpeg's own decode time), so they mean something on a shared box.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vae import cli  # noqa: E402
from vae import decode, ffmpeg, probe, sinks  # noqa: E402

cli.quiet_tensorflow()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vae import export, images, latent, mogrify, model, refiner, synthetic, training  # noqa: E402


def forward_flops(keras_model):
    """Multiply-adds x2 of the convolutions, transposed convolutions and dense layers, per item."""
    import keras
    total = 0
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, c_in = layer.input.shape
            k = layer.kernel_size
            total += 2 * h * w * k[0] * k[1] * c_in * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k = layer.kernel_size
            total += 2 * h * w * k[0] * k[1] * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def best_rate(fn, work, repeats=3):
    """Items per second of fn() (which does `work` items), best of a few runs after a warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return work / min(times)


def matmul_flops(n=2048, repeats=10):
    """The machine's best float32 matmul rate: the best of several warm runs (a shared machine's
    first and slowest runs say more about the neighbours than about the cores)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n]) / n ** 0.5  # keeps the chained products finite

    @tf.function
    def run():
        x = a
        for _ in range(4):
            x = tf.matmul(x, b)
        return x[0, 0]

    for _ in range(2):
        run().numpy()
    return best_rate(lambda: run().numpy(), 4 * 2 * n ** 3, repeats=repeats)


def write_tiles(folder, width, height, count, shards):
    """`count` painting-like tiles at the tile size as records (one file or shards) with a manifest."""
    from vae import extract, manifest
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    distinct = [synthetic.painting(rng, width, height, strokes=60) for _ in range(32)]
    out = os.path.join(folder, f"tiles{shards}.tfrecord.gz")
    paths = extract.shard_paths(out, shards)
    writer = extract.ShuffledWriter(paths, seed=0)
    try:
        for i in range(count):  # shifted copies: each tile differs, as real ones do, and compresses like them
            writer(np.roll(distinct[i % len(distinct)], i // len(distinct), axis=1), "bench", "images", i)
        writer.finish()
    finally:
        writer.cleanup()
    listed = [{"path": os.path.basename(p), "count": n} for p, n in zip(paths, writer.shard_counts)]
    manifest.write_manifest(manifest.manifest_path(out), width, height,
                            [{"name": "bench", "kind": "images", "path": folder, "count": count}],
                            shards=listed if shards > 1 else None)
    return paths


def input_rates(folder, width, height, count, batch=50):
    """Tiles/s of training's input alone (records.training_dataset, no model): streamed from one
    file and from 4 shards, and later epochs from the in-memory cache.

    A stream is timed from its first batch on: that batch waits for the shuffle buffer to fill
    (reported apart, as `fill_s`), after which the rate is what training sees for the rest of
    the epoch. Each run is a fresh pipeline reading the files again; the best of three counts.
    """
    from vae import records
    results = {"first": {}, "fill_s": {}}
    steps = count // batch
    for shards, name in ((1, "1_file"), (4, "4_shards")):
        files = write_tiles(folder, width, height, count, shards)
        streamed = records.training_dataset(files, (width, height), batch, seed=0, cache_gb=0)
        runs = []
        for _ in range(3):
            iterator = iter(streamed)
            started = time.perf_counter()
            next(iterator)
            filled = time.perf_counter()
            for _ in range(steps):
                next(iterator)
            runs.append((steps * batch / (time.perf_counter() - filled), filled - started))
            del iterator
        results["first"][name] = max(rate for rate, _ in runs)
        results["fill_s"][name] = min(fill for _, fill in runs)
    iterator = iter(records.training_dataset(files, (width, height), batch, seed=0, cache_gb=64))
    for _ in range(steps):  # the first epoch fills the cache
        next(iterator)

    def cached():
        for _ in range(steps):
            next(iterator)

    results["cached"] = best_rate(cached, steps * batch, repeats=3)
    return results


def input_startup(folder, count, width=64, height=36):
    """Seconds from nothing to the first training batch (tile size, counts, preview samples,
    first batch) on `count` tiles and on ten times as many: start-up must not grow with the data."""
    from vae import records, training
    times = {}
    for scale in (1, 10):
        files = write_tiles(os.path.join(folder, f"x{scale}"), width, height, count * scale, 4)

        def start():
            size = records.tile_size(files)
            training.sample_tiles(files, size)
            next(iter(records.training_dataset(files, size, 50, seed=0)))

        times[f"{scale}x"] = min(run_timed_fn(start) for _ in range(3))
    return times


def run_timed_fn(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def training_rate(height, width, batch, steps, mixed=False):
    import keras
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    config = model.VAEConfig(width, height)
    vae = model.build_vae(config)
    state = training.TrainState({"model": vae}, {"model": keras.optimizers.Adam(2e-4)})
    trainer = training.Trainer(model.Spec(), state, config)
    data = tf.cast(tf.random.uniform([batch, height, width, 3], maxval=256), tf.uint8)  # as training gets them
    step = tf.function(trainer.step)

    def run():
        for _ in range(steps):
            finite = step(data)
        bool(finite)  # one host sync per run, as training.run syncs only to log

    rate = best_rate(run, steps * batch, repeats=2)
    flops = 3 * (forward_flops(vae.encoder) + forward_flops(vae.decoder))
    keras.mixed_precision.set_global_policy("float32")
    return rate, flops


def graph_flops(fn, *specs):
    """FLOPs (2 x multiply-adds) of the convolutions in fn traced at the given static shapes: a
    spatial model's layers have open sizes, so they are counted in its graph at one size."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            _, h, w, _ = op.outputs[0].shape
            kh, kw, c_in, c_out = op.inputs[1].shape
            total += 2 * h * w * kh * kw * c_in * c_out
    return total


def spatial_config(width, height, downsample=8, upsample="shuffle", resize_border="mirror"):
    """A spatial run's config; `upsample` as train_vae.py's --upsample (its default: "resize");
    `resize_border` "mirror" as a new run's, "zeros" as a run's from before 2026-12-07."""
    filters, kernels = model.spatial_layers(downsample)
    return model.VAEConfig(width, height, codes=16, latent="spatial", downsample=downsample, filters=filters,
                           kernels=kernels, upsample=upsample, resize_border=resize_border)


def spatial_flops(vae, config, width, height):
    """Encoder and decoder FLOPs of a spatial VAE on one width x height image."""
    d = config.downsample
    encoder = graph_flops(lambda x: vae.encoder(x, training=False), tf.TensorSpec([1, height, width, 3]))
    decoder = graph_flops(lambda z: vae.decoder(z, training=False),
                          tf.TensorSpec([1, -(-height // d), -(-width // d), config.codes]))
    return encoder + decoder


def spatial_training_rate(height, width, batch, steps, upsample="shuffle", resize_border="mirror"):
    """Tiles/s of a spatial VAE's train step (16 channels at 1/8) and its FLOPs per tile."""
    run, tiles, flops = spatial_training_steps(height, width, batch, steps, upsample, resize_border)
    return best_rate(run, tiles, repeats=2), flops


def alternated_share(run, work, flops, rounds):
    """run() (`work` items of `flops` each) against the matmul rate, the two alternated `rounds`
    times: this machine's speed drifts by a tenth within minutes, so a share against a matmul
    rate taken minutes before moved by as much as the gaps it was to show. Returns the pooled
    share (all items over all seconds, against the mean matmul rate), each round's share and the
    pooled rate."""
    matmuls, seconds = [], []
    for _ in range(rounds):
        matmuls.append(matmul_flops(repeats=3))
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    rate = rounds * work / sum(seconds)
    shares = [work / s * flops / m for s, m in zip(seconds, matmuls)]
    return rate * flops / (sum(matmuls) / rounds), shares, rate


def spatial_training_steps(height, width, batch, steps, upsample="shuffle", resize_border="mirror"):
    """(run, tiles, flops): run() takes `steps` train steps of a spatial VAE (16 channels at 1/8)
    on `batch` tiles, traced and warm; `flops` per tile."""
    import keras
    config = spatial_config(width, height, upsample=upsample, resize_border=resize_border)
    vae = model.build_vae(config)
    state = training.TrainState({"model": vae}, {"model": keras.optimizers.Adam(2e-4)})
    trainer = training.Trainer(model.Spec(), state, config)
    data = tf.cast(tf.random.uniform([batch, height, width, 3], maxval=256), tf.uint8)
    step = tf.function(trainer.step)

    def run():
        for _ in range(steps):
            finite = step(data)
        bool(finite)

    run()
    return run, steps * batch, 3 * spatial_flops(vae, config, width, height)


def export_untrained_spatial(folder, width, height, upsample="shuffle", resize_border="mirror"):
    """An untrained spatial VAE exported as export_graphs.py does (any size)."""
    config = spatial_config(width, height, upsample=upsample, resize_border=resize_border)
    vae = model.build_vae(config)
    export.save("encoder", vae.encoder, (None, None, 3), folder)
    export.save("decoder", vae.decoder, (None, None, config.codes), folder)
    export.update_model_json(folder, width=width, height=height, codes=config.codes, latent="spatial",
                             downsample=config.downsample, vae_step=0)
    return lambda w, h: spatial_flops(vae, config, w, h)


def spatial_frame_rate(models, width, height, batch, calls):
    """Frames/s of the exported spatial encoder and decoder, batched, on width x height frames
    (the render's model step at the frame's own size, without a refiner)."""
    return best_rate(spatial_frame_steps(models, width, height, batch, calls), batch * calls)


def spatial_frame_steps(models, width, height, batch, calls):
    """run(): `calls` batches of the exported spatial encoder and decoder, traced and warm."""
    frames = tf.cast(tf.random.uniform([batch, height, width, 3], maxval=255), tf.uint8)

    @tf.function
    def step(frames):
        mean, _ = models.encode(tf.cast(frames, tf.float32) / 255.0)
        return models.decode(mean, size=(width, height))

    def run():
        for _ in range(calls):
            step(frames).numpy()

    run()
    return run


def measure_spatial(results, width, height, work, quick, say):
    """The spatial VAE's figures into `results` (which holds spatial_matmul_gflops: a --spatial run
    merged into the JSON keeps the full run's matmul_gflops for the figures measured against it)."""
    rounds, calls, steps = (3, 2, 3) if quick else (5, 4, 6)
    say("spatial training ...")
    rate, flops = spatial_training_rate(height, width, batch=16, steps=steps)
    results["spatial_train_tiles_per_s"] = rate
    results["spatial_train_share_of_matmul"] = rate * flops / (results["spatial_matmul_gflops"] * 1e9)
    say("spatial encoder and decoder at the frame's size ...")
    folder = os.path.join(work, "spatial_models")
    flops_at = export_untrained_spatial(folder, width, height)
    models = export.Models(folder)
    for w, h, batch in ((640, 360, 4), (1280, 720, 2)):
        fps = spatial_frame_rate(models, w, h, batch, calls)
        results[f"spatial_frames_per_s_{w}x{h}"] = fps
        results[f"spatial_share_of_matmul_{w}x{h}"] = fps * flops_at(w, h) / (results["spatial_matmul_gflops"] * 1e9)
    # The default decoder, beside --upsample shuffle: as a new run has it (its resizing stages at the
    # lower size, mirrored border) and as runs before 2026-12-07 have it (resized, then convolved).
    for key, border in (("spatial_resize", "mirror"), ("spatial_resize_zeros", "zeros")):
        say(f"spatial training and encoder+decoder at 1280x720, --upsample resize, {border} border ...")
        run, tiles, flops = spatial_training_steps(height, width, batch=16, steps=steps,
                                                   upsample="resize", resize_border=border)
        share, shares, rate = alternated_share(run, tiles, flops, rounds)
        results[f"{key}_train_share_of_matmul"] = share
        results[f"{key}_train_round_shares"] = [round(v, 3) for v in shares]
        results[f"{key}_train_tiles_per_s"] = rate
        flops_at = export_untrained_spatial(os.path.join(work, key), width, height, "resize", border)
        run = spatial_frame_steps(export.Models(os.path.join(work, key)), 1280, 720, 2, calls)
        share, shares, fps = alternated_share(run, 2 * calls, flops_at(1280, 720), rounds)
        results[f"{key}_frames_per_s_1280x720"] = fps
        results[f"{key}_share_of_matmul_1280x720"] = share
        results[f"{key}_round_shares_1280x720"] = [round(v, 3) for v in shares]
        results[f"{key}_flops_1280x720"] = flops_at(1280, 720)
    # The same multiply-adds either way: the lower-size stages are not credited with work they skip.
    assert results["spatial_resize_flops_1280x720"] == results["spatial_resize_zeros_flops_1280x720"]
    say("spatial mogrify end to end at the frame's size ...")
    for w, h in ((640, 360), (1280, 720)):
        # 192 frames at 640x360 (12 calls of 16), 96 at 1280x720 (24 of 4), in alternated rounds.
        # 96 frames at 640x360 (6 calls), once against a best-of-three batched rate, gave 0.74-0.80:
        # the render's fill and drain (half a second or more) were a tenth of so short a clip, and
        # one batched rate drifts as the machine does; 384 frames gave 0.89-1.00.
        frames = (24 if quick else 192) * 640 // w
        clip = synthetic.write_video(os.path.join(work, f"spatial_{w}x{h}.mp4"), width=w, height=h, frames=frames)
        batch = mogrify.Session(models, fake_sources(models.codes, "x"), mogrify.Look(
            latent.Strength("0.25"), latent.Strength("0.5")), 16).frames_per_call((w, h))
        f = alternated_render_share(models, clip, frames, os.path.join(work, f"spatial_{w}x{h}_out.mp4"), batch,
                                    calls, rounds, say, size=(w, h))
        results[f"spatial_batched_render_per_s_{w}x{h}"] = f["batched_frames_per_s"]
        results[f"spatial_mogrify_frames_per_s_{w}x{h}"] = f["end_to_end_frames_per_s"]
        results[f"spatial_mogrify_share_{w}x{h}"] = f["share_of_batched"]
        results[f"spatial_mogrify_round_shares_{w}x{h}"] = f["round_shares"]


def measure_match(results, work, quick, say):
    """--match 1 against --match 0, end to end at 1280x720 through an untrained spatial model with a
    full bank (BANK_SIZE random code neighbourhoods: the size evaluate_embeddings.py writes at most)."""
    from vae import match
    folder = os.path.join(work, "match_models")
    export_untrained_spatial(folder, 128, 72)
    models = export.Models(folder)
    clip = synthetic.write_video(os.path.join(work, "match_1280x720.mp4"), width=1280, height=720,
                                 frames=12 if quick else 48)
    rng = np.random.default_rng(0)
    match.save_bank(match.bank_path(folder), {"paintings": rng.normal(
        0, 1, (match.BANK_SIZE, match.NEIGHBOURHOOD, match.NEIGHBOURHOOD, models.codes)).astype(np.float32)})
    for strength in ("0", "1"):
        say(f"mogrify --match {strength} at 1280x720 ...")
        rate, _ = mogrify_rate(models, clip, os.path.join(work, f"match_{strength}.mp4"), 16, match=strength)
        results[f"match_{strength}_frames_per_s_1280x720"] = rate
    results["match_share_1280x720"] = results["match_1_frames_per_s_1280x720"] / results["match_0_frames_per_s_1280x720"]
    print(f"mogrify --match 1 at 1280x720: {results['match_1_frames_per_s_1280x720']:.2f} frames/s end to end, "
          f"{results['match_share_1280x720']:.2f} of --match 0 ({results['match_0_frames_per_s_1280x720']:.2f}; "
          f"target 0.5)")


def print_spatial(results, width, height):
    print(f"spatial VAE (16 channels at 1/8, --upsample shuffle): training {results['spatial_train_tiles_per_s']:.1f} tiles/s at "
          f"{width}x{height} ({results['spatial_train_share_of_matmul']:.2f} of matmul); encoder+decoder "
          + ", ".join(f"{results[f'spatial_frames_per_s_{s}']:.2f} frames/s at {s} "
                      f"({results[f'spatial_share_of_matmul_{s}']:.2f} of matmul)" for s in ("640x360", "1280x720")))
    for key, name in (("spatial_resize", "the default decoder (--upsample resize) as a new run has it"),
                      ("spatial_resize_zeros", "  as runs before 2026-12-07 have it (resized, then convolved)")):
        rounds = results[f"{key}_train_round_shares"]
        print(f"  {name}: training {results[f'{key}_train_tiles_per_s']:.1f} tiles/s, "
              f"{results[f'{key}_train_share_of_matmul']:.2f} of matmul (alternated with it, rounds "
              f"{min(rounds):.2f} to {max(rounds):.2f}), encoder+decoder at "
              f"1280x720 {results[f'{key}_frames_per_s_1280x720']:.2f} frames/s "
              f"({results[f'{key}_share_of_matmul_1280x720']:.2f} of matmul, rounds "
              f"{min(results[f'{key}_round_shares_1280x720']):.2f} to "
              f"{max(results[f'{key}_round_shares_1280x720']):.2f}); targets 0.65 and 0.60")
    for size in ("640x360", "1280x720"):
        rounds = results[f"spatial_mogrify_round_shares_{size}"]
        print(f"spatial mogrify at {size}: {results[f'spatial_mogrify_frames_per_s_{size}']:.2f} frames/s end to end, "
              f"{results[f'spatial_mogrify_share_{size}']:.2f} of the batched render "
              f"({results[f'spatial_batched_render_per_s_{size}']:.2f}; alternated with it, rounds {min(rounds):.2f} "
              f"to {max(rounds):.2f}; target 0.85)")


def merge_json(path, results):
    previous = {}
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({**previous, **results}, f, indent=2)
    print(f"wrote {path}")


def export_untrained(folder, height, width):
    vae = model.build_vae(model.VAEConfig(width, height))
    net = refiner.build_refiner(refiner.RefinerConfig(width, height))
    export.save("encoder", vae.encoder, (height, width, 3), folder)
    export.save("decoder", vae.decoder, (512,), folder)
    export.save("refiner", net, (height, width, 3), folder)
    export.update_model_json(folder, width=width, height=height, codes=512, vae_step=0, refiner_step=0)
    flops = forward_flops(vae.encoder) + forward_flops(vae.decoder) + forward_flops(net)
    return flops


def inference_rate(models, batch, calls, detail=0.0, size=None, repeats=3):
    """Frames/s of the batched model step alone (with detail, each frame is rendered twice), on
    tiles or, for a spatial model, on frames of `size`: the best of `repeats` warm runs."""
    width, height = size or (models.width, models.height)
    frames = tf.cast(tf.random.uniform([batch, height, width, 3], maxval=255), tf.uint8)
    zeros = np.zeros(models.codes, np.float32)
    render = mogrify.make_render(models, detail)
    strength = tf.fill([batch], 0.5)
    return best_rate(lambda: [render(frames, strength, strength, zeros, zeros, 0.0)[0].numpy() for _ in range(calls)],
                     batch * calls, repeats)


def fake_sources(codes, stem):
    rng = np.random.default_rng(0)
    return {stem: {"kind": "video", "count": 1, "mean": rng.normal(0, 0.1, codes).tolist(), "lab_mean": [50, 0, 0]},
            "paintings": {"kind": "images", "count": 1, "mean": rng.normal(0, 0.1, codes).tolist(),
                          "lab_mean": [50, 30, 30]}}


def mogrify_rate(models, clip, out, batch, detail=0.0, beta="0.5", measure=True, match=None):
    """End-to-end frames/s of mogrify on a clip; start-up (loading models, the first trace) is
    outside this timing. Returns (rate, result)."""
    stem = os.path.splitext(os.path.basename(clip))[0]
    look = mogrify.Look(latent.Strength("0.25"), latent.Strength(beta), detail,
                        match=None if match is None else latent.Strength(match))
    session = mogrify.Session(models, fake_sources(models.codes, stem), look, batch)
    start = time.perf_counter()
    result = mogrify.render_video(session, clip, out, mogrify.VideoOptions(crop="none", measure=measure))
    return result["frames"] / (time.perf_counter() - start), result


def seek_latency(clip, work, tile):
    """Seconds from asking for a 3 s segment 5 minutes into a 10-minute 720p video to its first
    tile: the probe, finding its borders (in the segment) and seeking."""
    long_clip = os.path.join(work, "ten_minutes.mp4")
    loops = int(np.ceil(600 / max(0.1, probe.probe(clip).duration)))
    subprocess.run([ffmpeg.exe(), "-v", "error", "-stream_loop", str(loops - 1), "-i", clip, "-c", "copy",
                    "-t", "600", long_clip], check=True)
    start = time.perf_counter()
    meta = probe.probe(long_clip)
    crop = probe.resolve_crop(meta, "auto", 300, 3)
    frames = decode.read_frames(meta, tile, crop, start=300, duration=3)
    next(frames)
    latency = time.perf_counter() - start
    frames.close()
    return latency, meta.duration


def serial_rate(models, clip, out, frames):
    """The original's loop: one frame at a time through every stage."""
    import cv2
    meta = probe.probe(clip)
    encoder, decoder, refine = models._fn["encoder"], models._fn["decoder"], models._fn["refiner"]
    start = time.perf_counter()
    count = 0
    sink = sinks.Mp4Sink(out, (meta.width, meta.height), meta.fps, (meta.width, meta.height), preset="medium")
    try:
        for frame in decode.read_frames(meta, (meta.width, meta.height), limit=frames):
            tile = cv2.resize(frame.image, (models.width, models.height), interpolation=cv2.INTER_AREA)
            mean = encoder(images=tf.constant(tile[None].astype(np.float32) / 255))["mean"]
            image = refine(images=decoder(z=mean)["images"])["images"].numpy()[0]
            big = cv2.resize(image, (meta.width, meta.height), interpolation=cv2.INTER_CUBIC)
            sink.write(images.to_uint8(big), frame.time, frame.duration)
            count += 1
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return count / (time.perf_counter() - start)


def run_timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def peak_rss_mb(cmd):
    """Peak resident memory of a command (and its ffmpeg children), in MB."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def rss_mb(pid):
    """Resident memory of a running process, in MB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def live_figures(work, tile, seconds=60, detail=1.0, say=print):
    """mogrify_video.py --live on loopback: a 640x360 25 fps testsrc2 stream sent over udp by
    ffmpeg, styled by an untrained model of `tile` size, sent on over udp to an ffmpeg that
    throws it away; `seconds` of it counted from the first styled frame. Returns the run's
    figures (--stats) with the script's memory after 10 s and at the end."""
    w, h = tile
    models = os.path.join(work, f"live-{w}x{h}")
    if not os.path.isdir(models):
        export_untrained(models, h, w)
        latent.save_embeddings(models, fake_sources(512, "camera"))
    port_in, port_out = 47310, 47311
    ffmpeg_path = ffmpeg.exe()
    player = subprocess.Popen([ffmpeg_path, "-v", "error", "-i", f"udp://127.0.0.1:{port_out}", "-f", "null", "-"])
    camera = subprocess.Popen([ffmpeg_path, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=25", "-f",
                               "lavfi", "-i", "sine=f=440:r=48000", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
                               "zerolatency", "-g", "25", "-c:a", "aac", "-f", "mpegts",
                               f"udp://127.0.0.1:{port_in}?pkt_size=1316"])
    stats = os.path.join(work, "live.json")
    run = subprocess.Popen([sys.executable, os.path.join(ROOT, "mogrify_video.py"), f"udp://127.0.0.1:{port_in}",
                            f"udp://127.0.0.1:{port_out}", "--models", models, "--live", "--detail", str(detail),
                            "--stats", stats], stderr=subprocess.PIPE, text=True)
    memory = {}
    try:
        for line in run.stderr:
            if "Ctrl-C ends it" in line:
                break
        threading.Thread(target=run.stderr.read, daemon=True).start()  # drained: the status lines
        began = time.monotonic()
        time.sleep(10)
        memory["10s"] = rss_mb(run.pid)
        time.sleep(max(0, seconds - 10))
        memory[f"{seconds}s"] = rss_mb(run.pid)
        run.send_signal(signal.SIGINT)
        run.wait(60)
    finally:
        for proc in (run, camera, player):
            proc.kill()
            proc.wait()
    with open(stats) as f:
        figures = json.load(f)
    figures["memory_mb"] = {k: round(v, 1) for k, v in memory.items()}
    figures["measured_s"] = round(time.monotonic() - began, 1)
    return figures


def tensorflow_import_s():
    """Seconds `python -c "import tensorflow"` takes here, now."""
    return run_timed([sys.executable, "-c", "import tensorflow"])


def live_startup_s(work, tile, detail=1.0):
    """Seconds from starting mogrify_video.py --live on a udp stream to the first styled frame's
    packet on its udp output (a socket here listens for it): the demo-size model of `tile`."""
    import socket
    w, h = tile
    models = os.path.join(work, f"live-{w}x{h}")
    if not os.path.isdir(models):
        export_untrained(models, h, w)
        latent.save_embeddings(models, fake_sources(512, "camera"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(60)
    port_in, port_out = 47320, listener.getsockname()[1]
    camera = subprocess.Popen([ffmpeg.exe(), "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=25",
                               "-f", "lavfi", "-i", "sine=f=440:r=48000", "-c:v", "libx264", "-preset", "ultrafast",
                               "-tune", "zerolatency", "-g", "25", "-c:a", "aac", "-f", "mpegts",
                               f"udp://127.0.0.1:{port_in}?pkt_size=1316"])
    time.sleep(1)  # the camera is already on when the performer starts the render
    began = time.perf_counter()
    run = subprocess.Popen([sys.executable, os.path.join(ROOT, "mogrify_video.py"), f"udp://127.0.0.1:{port_in}",
                            f"udp://127.0.0.1:{port_out}", "--models", models, "--detail", str(detail)],
                           stderr=subprocess.DEVNULL)
    try:
        listener.recv(2048)
        return time.perf_counter() - began
    finally:
        run.send_signal(signal.SIGTERM)  # ended as a service would: it closes its input's ffmpeg
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            pass
        for proc in (run, camera):
            proc.kill()
            proc.wait()
        listener.close()


def measure_startup(results, work, repeats, say):
    """The live start-up beside TensorFlow's own import time, alternated so that both see the same load."""
    say("live start-up ...")
    starts, imports = [], []
    for _ in range(repeats):
        imports.append(tensorflow_import_s())
        starts.append(live_startup_s(work, (64, 36)))
    imports.append(tensorflow_import_s())
    start, tf_import = float(np.median(starts)), float(np.median(imports))
    results["live_startup"] = {"first_styled_frame_s": round(start, 2), "import_tensorflow_s": round(tf_import, 2),
                               "after_tensorflow_s": round(start - tf_import, 2), "runs": repeats}
    print(f"live start-up: first styled frame {start:.2f} s after the command, `import tensorflow` alone "
          f"{tf_import:.2f} s: {start - tf_import:.2f} s after TensorFlow (target at most 2.00), median of {repeats}")


def measure_render(results, width, height, work, quick, say, rounds=5):
    """mogrify end to end against the batched model rate, plain and with --detail 1: the two
    alternated `rounds` times, each rate pooled over its rounds (all frames over all seconds).
    This machine's speed drifts by a tenth from minute to minute (the batched rate alone went
    from 2.6 to 3.3 frames/s in one run), so a share taken from one run of each, or best-of-n
    against a single run, moved by as much as the gap it was to show."""
    models_dir = os.path.join(work, "models")
    if not os.path.isdir(models_dir):
        export_untrained(models_dir, height, width)
    models = export.Models(models_dir, need_refiner=True)
    frames = 100 if quick else 200
    clip = synthetic.write_video(os.path.join(work, "render.mp4"), width=1280, height=720, frames=frames)
    for detail, key in ((0.0, "plain"), (1.0, "detail")):
        f = results[f"render_{key}"] = alternated_render_share(models, clip, frames, os.path.join(work, f"{key}.mp4"),
                                                               16, 2 if quick else 4, rounds, say, detail=detail)
        print(f"mogrify {key} at 1280x720 through a {width}x{height} model: {f['end_to_end_frames_per_s']:.2f} frames/s "
              f"end to end, {f['batched_frames_per_s']:.2f} batched, pooled over {rounds} alternated rounds: "
              f"{f['share_of_batched']:.2f} of it (rounds {min(f['round_shares']):.2f} to {max(f['round_shares']):.2f})")


def alternated_render_share(models, clip, frames, out, batch, calls, rounds, say, detail=0.0, size=None):
    """mogrify end to end on `clip` (`frames` frames) against the batched model step (`calls` calls
    of `batch`, at `size` for a spatial model), the two alternated `rounds` times, each rate pooled
    over its rounds (all frames over all seconds). mogrify is asked for 16 frames a call, and
    `batch` is what it then runs a call (fewer for a spatial model at 1280x720). Returns the
    figures as results.json holds them."""
    inference_rate(models, batch, calls=1, detail=detail, size=size, repeats=1)  # traced and warm
    batched, end_to_end = [], []
    for round_ in range(rounds):
        say(f"mogrify to {os.path.basename(out)}, round {round_ + 1} of {rounds} ...")
        batched.append(inference_rate(models, batch, calls=calls, detail=detail, size=size, repeats=1))
        end_to_end.append(mogrify_rate(models, clip, out, 16, detail=detail)[0])
    batched_rate = rounds * batch * calls / sum(batch * calls / r for r in batched)
    rate = rounds * frames / sum(frames / r for r in end_to_end)
    return {"batched_frames_per_s": round(batched_rate, 2), "end_to_end_frames_per_s": round(rate, 2),
            "share_of_batched": round(rate / batched_rate, 3),
            "round_shares": [round(e / b, 3) for b, e in zip(batched, end_to_end)],
            "rounds": [[round(b, 2), round(e, 2)] for b, e in zip(batched, end_to_end)]}


def print_live(f, tile):
    print(f"live, 640x360 25 fps over udp through a {tile[0]}x{tile[1]} model: {f['fps']:.1f} frames/s out, "
          f"{100 * f['dropped_share']:.1f}% dropped, delay {f['delay_mean']:.3f} s mean, {f['delay_p95']:.3f} s p95, "
          f"memory " + ", ".join(f"{v:.0f} MB after {k}" for k, v in f["memory_mb"].items()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=os.path.join(ROOT, "bench", "results.json"))
    p.add_argument("--size", default="320x180", help="tile size")
    p.add_argument("--quick", action="store_true", help="shorter clips and fewer steps (a smoke run)")
    p.add_argument("--input", action="store_true", help="measure only the training input (and merge into --json)")
    p.add_argument("--spatial", action="store_true",
                   help="measure only the spatial VAE: training, encoder+decoder at 640x360 and 1280x720 (and merge "
                        "into --json)")
    p.add_argument("--match", action="store_true",
                   help="measure only mogrify --match 1 against --match 0 at 1280x720 (and merge into --json)")
    p.add_argument("--startup", action="store_true",
                   help="measure only the live start-up (command to first styled frame) beside `import tensorflow`, "
                        "and mogrify's end-to-end share of the batched rate, plain and --detail 1 (merged into --json)")
    p.add_argument("--render", action="store_true",
                   help="measure only mogrify's end-to-end share of the batched rate, plain and --detail 1, in "
                        "alternated rounds (merged into --json)")
    p.add_argument("--live", action="store_true",
                   help="measure only live rendering: a 640x360 stream over udp for 60 s through a demo-size (64x36) "
                        "model (and merge into --json)")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frames = 200 if args.quick else 1000
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"TensorFlow {tf.__version__}", "tile": f"{width}x{height}"}
    work = tempfile.mkdtemp(prefix="vae-bench.")
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    if args.startup or args.render:
        if args.startup:
            measure_startup(results, work, 3 if args.quick else 5, say)
        measure_render(results, width, height, work, args.quick, say)
        merge_json(args.json, results)
        return

    if args.live:
        tile = (64, 36)
        say("live: 60 s of a udp stream ...")
        results["live"] = live_figures(work, tile, seconds=20 if args.quick else 60, say=say)
        print_live(results["live"], tile)
        merge_json(args.json, results)
        return

    if args.match:
        measure_match(results, work, args.quick, say)
        merge_json(args.json, results)
        return

    if args.spatial:
        say("matmul ...")
        results["spatial_matmul_gflops"] = matmul_flops() / 1e9
        measure_spatial(results, width, height, work, args.quick, say)
        print(f"matmul {results['spatial_matmul_gflops']:.1f} GFLOP/s")
        print_spatial(results, width, height)
        merge_json(args.json, results)
        return

    say("training input ...")
    rates = input_rates(work, width, height, 600 if args.quick else 1500)
    results["input_first_epoch_tiles_per_s"] = rates["first"]
    results["input_cached_tiles_per_s"] = rates["cached"]
    results["input_shuffle_fill_s"] = rates["fill_s"]
    startup = input_startup(work, 2000)
    results["input_startup_s"] = startup
    results["input_startup_ratio_10x"] = startup["10x"] / startup["1x"]
    first = rates["first"]
    print(f"training input at {width}x{height}: first epoch {first['1_file']:.0f} tiles/s from one file, "
          f"{first['4_shards']:.0f} from 4 shards ({first['4_shards'] / first['1_file']:.2f}x, target 1.5x); "
          f"cached {rates['cached']:.0f} tiles/s (target 5000); start-up {startup['1x']:.2f} s, on 10x the data "
          f"{startup['10x']:.2f} s ({results['input_startup_ratio_10x']:.2f}x, target at most 1.2x)")
    if args.input:
        merge_json(args.json, results)
        return

    say("matmul ...")
    results["matmul_gflops"] = matmul_flops() / 1e9
    say("training ...")
    rate, flops = training_rate(height, width, batch=16, steps=3 if args.quick else 6)
    results["train_tiles_per_s"] = rate
    results["train_share_of_matmul"] = rate * flops / (results["matmul_gflops"] * 1e9)
    try:
        rate_bf16, _ = training_rate(height, width, batch=16, steps=3 if args.quick else 6, mixed=True)
        results["train_bf16_tiles_per_s"] = rate_bf16
    except Exception as e:  # not every CPU and build can
        results["train_bf16_tiles_per_s"] = f"failed: {e}"

    results["spatial_matmul_gflops"] = results["matmul_gflops"]
    measure_spatial(results, width, height, work, args.quick, say)

    say("inference ...")
    models_dir = os.path.join(work, "models")
    infer_flops = export_untrained(models_dir, height, width)
    models = export.Models(models_dir, need_refiner=True)
    results["infer_frames_per_s"] = inference_rate(models, batch=16, calls=4 if args.quick else 8)
    results["infer_share_of_matmul"] = results["infer_frames_per_s"] * infer_flops / (results["matmul_gflops"] * 1e9)

    say("making clips ...")
    clip = synthetic.write_video(os.path.join(work, "clip.mp4"), width=1280, height=720, frames=frames)
    quarter = synthetic.write_video(os.path.join(work, "quarter.mp4"), width=1280, height=720, frames=frames // 4)
    # Extraction is measured on real footage when it is here: synthetic frames decode unrealistically fast.
    real = os.path.join(ROOT, "..", "shared", "data", "videos", "bigbuckbunny.mp4")
    footage = os.path.join(work, "footage.mp4")
    if os.path.isfile(real):
        subprocess.run([ffmpeg.exe(), "-v", "error", "-stream_loop", "19", "-i", real, "-c", "copy", footage],
                       check=True)
        results["extract_clip"] = "Big Buck Bunny 720p, looped 20 times (2660 frames)"
    else:
        footage = synthetic.write_video(os.path.join(work, "long.mp4"), width=1280, height=720, frames=4 * frames)
        results["extract_clip"] = f"synthetic 720p, {4 * frames} frames"

    say("mogrify ...")
    results["mogrify_frames_per_s"], plain = mogrify_rate(models, clip, os.path.join(work, "out.mp4"), 16)
    results["mogrify_share_of_batched"] = results["mogrify_frames_per_s"] / results["infer_frames_per_s"]
    results["mogrify_measures"] = {k: plain[k] for k in ("structure", "palette_before", "palette_after", "flicker")
                                   if k in plain}
    say("mogrify without measuring ...")
    rate, _ = mogrify_rate(models, clip, os.path.join(work, "unmeasured.mp4"), 16, measure=False)
    results["measured_share_of_unmeasured"] = results["mogrify_frames_per_s"] / rate
    say("mogrify with keyframed strength ...")
    rate, _ = mogrify_rate(models, clip, os.path.join(work, "keyed.mp4"), 16, beta="0=0,5=1,20=0.5")
    results["keyframes_share_of_constant"] = rate / results["mogrify_frames_per_s"]
    say("mogrify --detail 1 ...")
    results["infer_detail_frames_per_s"] = inference_rate(models, batch=16, calls=4 if args.quick else 8, detail=1.0)
    results["mogrify_detail_frames_per_s"], _ = mogrify_rate(models, clip, os.path.join(work, "detail.mp4"), 16,
                                                             detail=1.0)
    results["mogrify_detail_share_of_batched"] = (results["mogrify_detail_frames_per_s"]
                                                  / results["infer_detail_frames_per_s"])
    say("segment seek ...")
    results["segment_first_frame_s"], _ = seek_latency(clip, work, (width, height))
    say("serial loop ...")
    results["serial_frames_per_s"] = serial_rate(models, clip, os.path.join(work, "serial.mp4"),
                                                 100 if args.quick else 200)

    say("extraction ...")
    ffmpeg_time = min(run_timed([ffmpeg.exe(), "-v", "error", "-i", footage, "-an", "-f", "null", "-"])
                      for _ in range(2))
    extract_time = min(run_timed([sys.executable, os.path.join(ROOT, "extract_tiles.py"), "--out",
                                  os.path.join(work, "tiles.tfrecord.gz"), "--video", footage, "--size", args.size])
                       for _ in range(2))
    results["ffmpeg_decode_s"] = ffmpeg_time
    results["extract_s"] = extract_time
    results["extract_share_of_ffmpeg"] = ffmpeg_time / extract_time

    say("memory ...")
    script = os.path.join(ROOT, "mogrify_video.py")
    with open(os.path.join(models_dir, "embeddings.json"), "w") as f:
        json.dump({"sources": fake_sources(models.codes, "quarter")}, f)
    # Each measurement runs in a fresh wrapper process, so each peak is that run's alone.
    # With --detail 1, the heavier path: full-size frames travel through the queues.
    short_mb = peak_rss_mb([sys.executable, script, quarter, os.path.join(work, "m1.mp4"), "--models", models_dir,
                            "--detail", "1"])
    long_mb = peak_rss_mb([sys.executable, script, clip, os.path.join(work, "m2.mp4"), "--models", models_dir,
                           "--detail", "1"])
    results["mogrify_peak_mb"] = short_mb  # a clip of frames/4
    results["mogrify_4x_peak_mb"] = long_mb  # the clip of frames
    results["memory_ratio_4x"] = long_mb / short_mb

    targets = [("training, share of matmul FLOP/s", results["train_share_of_matmul"], 0.60),
               ("batched inference, share of matmul FLOP/s", results["infer_share_of_matmul"], 0.65),
               ("mogrify end to end, share of batched", results["mogrify_share_of_batched"], 0.90),
               ("mogrify --detail 1, share of batched", results["mogrify_detail_share_of_batched"], 0.85),
               ("keyframed strength, share of constant", results["keyframes_share_of_constant"], 0.97),
               ("measuring, share of an unmeasured render", results["measured_share_of_unmeasured"], 0.95),
               ("extraction, share of ffmpeg decode speed", results["extract_share_of_ffmpeg"], 0.50)]
    print(f"\nmachine: {results['machine']}; tiles {results['tile']}; matmul {results['matmul_gflops']:.1f} GFLOP/s")
    print(f"training {results['train_tiles_per_s']:.1f} tiles/s (bfloat16: {results['train_bf16_tiles_per_s']}), "
          f"inference {results['infer_frames_per_s']:.1f} frames/s, mogrify {results['mogrify_frames_per_s']:.1f} "
          f"frames/s, serial loop {results['serial_frames_per_s']:.1f} frames/s")
    print_spatial(results, width, height)
    print(f"extraction of {results['extract_clip']}: {results['extract_s']:.1f} s, "
          f"ffmpeg's decode {results['ffmpeg_decode_s']:.1f} s; "
          f"mogrify peak memory {short_mb:.0f} MB, on the 4x clip {long_mb:.0f} MB")
    print(f"\n{'measure':45} {'value':>8} {'target':>8}")
    for name, value, target in targets:
        print(f"{name:45} {value:8.2f} {target:8.2f} {'ok' if value >= target else 'below'}")
    seek = results["segment_first_frame_s"]
    print(f"{'3 s segment of a 10-minute video, first tile (s)':45} {seek:8.2f} {2.0:8.2f} {'ok' if seek <= 2 else 'above'}")
    ratio = results["memory_ratio_4x"]
    print(f"{'memory on the 4x clip, ratio to the short one':45} {ratio:8.2f} {1.2:8.2f} {'ok' if ratio <= 1.2 else 'above'}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
