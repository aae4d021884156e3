"""Re-rendering videos, stills and folders with their codes shifted toward a style.

Every frame, at tile size (the contract's formula):

    z     = mean(encoder(frame))
    shift = -alpha * mean_source + beta * mean_style       (alpha, beta at the frame's time)
    part  = render(z + shift) - detail * render(z)
    part' = smooth * part'(previous frame) + (1 - smooth) * part
    out   = resize(part', output size) + detail * frame    (frame at its own resolution)

One tf.function runs the models on whole batches, the per-frame alpha and beta passed in as
tensors. ffmpeg decodes (and for `--detail`, also hands over the full-size frame from the same
decode) in one thread; another thread smooths, adds the detail in OpenCV at full size, measures
and feeds the encoder; so the models never wait on I/O and the video is never held in memory.

TensorFlow is imported only inside the functions that run the models, so that `check_request`
can refuse a bad command line before TensorFlow's seconds of start-up.
"""
import concurrent.futures
import dataclasses
import os
import time

import cv2
import numpy as np

from vae import images, latent, measures, safety, video
from vae.cli import UserError, atomic_path, error_message, info, progress, warn
from vae.pipeline import Consumer, Producer

STILL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg",
                    ".gif", ".wmv", ".flv", ".3gp", ".mxf", ".dv", ".ogv")


@dataclasses.dataclass
class Look:
    """What the user asked for, the same for every file of a run."""
    alpha: latent.Strength
    beta: latent.Strength
    detail: float = 0.0
    smooth: float = 0.2
    styles: list = None  # --style texts; None: the largest image source


def default_batch_size():
    import tensorflow as tf
    return 64 if tf.config.list_physical_devices("GPU") else 16


def make_render(models, source_mean, style_mean, detail):
    """The batched model step: uint8 frames and per-frame alpha, beta in; float `part` out.

    With detail the unshifted codes are rendered in the same call (one batch of twice the
    size), so the models run once per batch whatever the settings.
    """
    import tensorflow as tf
    source_mean = tf.constant(source_mean, tf.float32)
    style_mean = tf.constant(style_mean, tf.float32)
    spec = tf.TensorSpec([None, models.height, models.width, 3], tf.uint8)
    strength = tf.TensorSpec([None], tf.float32)

    @tf.function(input_signature=[spec, strength, strength])
    def render(frames, alpha, beta):
        z, _ = models.encode(tf.cast(frames, tf.float32) / 255.0)
        shifted = z - alpha[:, None] * source_mean + beta[:, None] * style_mean
        if not detail:
            return models.render(shifted)
        both = models.render(tf.concat([shifted, z], 0))
        n = tf.shape(z)[0]
        return both[:n] - detail * both[n:]

    return render


def compose(part, detail, full=None, size=None):
    """`out = resize(part, size) + detail * full`, uint8; with detail 0 the tile itself (ffmpeg
    scales it up in the encoder's process)."""
    if not detail:
        return images.to_uint8(part)
    h, w = full.shape[:2]
    up = cv2.resize(np.ascontiguousarray(part * 255, np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    out = cv2.scaleAdd(full.astype(np.float32), detail, up)  # in place of NumPy: threaded, no temporaries
    np.clip(out, 0, 255, out=out)
    return (out + 0.5).astype(np.uint8)


def even(frame):
    h, w = frame.shape[:2]
    return frame[:h - h % 2, :w - w % 2]


class Session:
    """The models and embeddings of one run, loaded once for every file rendered."""

    def __init__(self, models, sources, look, batch_size=None):
        self.models, self.sources, self.look = models, sources, look
        self.batch_size = batch_size or default_batch_size()
        self.style, self.style_mean, self.style_lab = latent.mix_styles(sources, look.styles)
        self._renders = {}
        # The style's tiles for the texture measure; an older folder has none (said once, here).
        self.texture = measures.style_reference(getattr(models, "folder", None) or ".",
                                                latent.style_weights(sources, look.styles))
        if self.texture is None:
            info("the models folder has no tiles.npz (evaluate_embeddings.py writes it): "
                 "texture is left out of the measures")

    @property
    def tile_size(self):
        return self.models.width, self.models.height

    def render_fn(self, source_mean):
        """The batched step for one source mean, traced once and reused while the mean stays
        (a folder of clips of one trained source traces once)."""
        key = source_mean.tobytes()
        if key not in self._renders:
            self._renders = {key: make_render(self.models, source_mean, self.style_mean, self.look.detail)}
        return self._renders[key]

    def source_mean(self, path, own_mean):
        """The trained source named by the file's stem, or else the input's own mean code."""
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in self.sources:
            return np.asarray(self.sources[stem]["mean"], np.float32), f"trained source {stem!r}"
        info(f"{stem} is not a trained source: its own mean code stands in for it")
        return own_mean(), "its own frames"

    def encode_mean(self, tiles):
        import tensorflow as tf
        total, count = 0.0, 0
        for batch in tiles:
            mean, _ = self.models.encode(tf.cast(batch, tf.float32) / 255.0)
            total += mean.numpy().sum(0, dtype=np.float64)
            count += len(batch)
        return None if count == 0 else (total / count).astype(np.float32)


def batched(frames, batch_size):
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_span(meta, start, duration):
    if start is not None and start < 0:
        raise UserError(f"--start {start}: must be at least 0")
    if duration is not None and duration <= 0:
        raise UserError(f"--duration {duration}: must be above 0")
    if start and meta.duration and start >= meta.duration:
        raise UserError(f"{meta.path}: --start {start} is past its end ({meta.duration:.2f} s)")


def check_audio_track(meta, audio_track):
    if audio_track is not None and meta.has_audio and audio_track >= len(meta.audio_codecs):
        raise UserError(f"{meta.path}: --audio-track {audio_track}, but it has {len(meta.audio_codecs)} "
                        f"audio track(s), counted from 0")


def check_output(input_path, output_path):
    same = os.path.exists(output_path) and os.path.samefile(input_path, output_path)
    if same or os.path.abspath(input_path) == os.path.abspath(output_path):
        raise UserError(f"{output_path}: that is the input; give another output name")


def check_video(input_path, output_path, start=None, duration=None, audio_track=0):
    """A video input and its output checked before anything is rendered; returns its probe."""
    if kind_of(output_path) == "image":
        raise UserError(f"{output_path}: a video is rendered to an .mp4 file")
    meta = video.probe(input_path)
    check_output(input_path, output_path)
    check_span(meta, start, duration)
    check_audio_track(meta, audio_track)
    return meta


def check_still(input_path, output_path):
    check_output(input_path, output_path)
    if os.path.splitext(output_path)[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{output_path}: an image is written as .png or .jpg")


def check_request(input_path, output_path, models_dir, styles, start=None, duration=None, audio_track=0):
    """Everything about a run that needs no TensorFlow, checked before the script imports it, so a
    mistyped name fails at once: the input and output, the models folder's JSON files (model.json,
    and embeddings.json against its code count), and the --style names against the sources.
    Returns (safety.read_models_folder's answer, the sources) for the run to go on with."""
    if os.path.isdir(input_path):
        folder_inputs(input_path, output_path)
    elif not os.path.exists(input_path):
        raise UserError(f"{input_path}: no such file")
    elif kind_of(input_path) == "image":
        check_still(input_path, output_path)
    else:
        check_video(input_path, output_path, start, duration, audio_track)
    found = safety.read_models_folder(models_dir)
    sources = latent.load_embeddings(models_dir, found[0]["codes"])
    latent.mix_styles(sources, styles)  # Session mixes them again; here only to refuse unknown names early
    if os.path.isfile(measures.tiles_path(models_dir)):
        safety.check_tiles(measures.tiles_path(models_dir), list(sources))
    return found, sources


def render_video(session, input_path, output_path, start=None, duration=None, crop="auto", inset=False,
                 audio_track=0, preset="veryfast", crf=18, codec_args=None, decoder_args=(), measure=True):
    """Render one video; returns the measures and what was done (`measure=False`: without
    them, for the benchmark's comparison)."""
    look = session.look
    meta = check_video(input_path, output_path, start, duration, audio_track)
    crop = video.resolve_crop(meta, crop, start, duration)
    cw, ch = crop.size_of(meta.width, meta.height)
    span = dict(start=start, duration=duration)

    def own_mean():
        estimate = meta.frames_estimate if duration is None else duration * float(meta.fps)
        step = max(1, int(estimate) // 200)  # up to 200 frames spread over the span
        frames = video.read_frames(meta, session.tile_size, crop, step, **span)
        mean = session.encode_mean(np.stack([f.image for f in batch]) for batch in batched(frames, session.batch_size))
        if mean is None:
            raise UserError(f"{input_path}: no frames could be decoded")
        return mean

    source_mean, source_label = session.source_mean(input_path, own_mean)
    render = session.render_fn(source_mean)
    estimate = meta.frames_estimate if duration is None else max(1, round(duration * float(meta.fps)))
    every = max(8, estimate // 300)  # frames between measured ones: a few hundred samples at most
    full = 1 if look.detail or measure else 0  # the meter sees every full-size frame and keeps its samples
    frame_size = (cw - cw % 2, ch - ch % 2) if look.detail else session.tile_size
    info(f"{meta.path}: {meta.width}x{meta.height} as shown at {float(meta.fps):.3g} fps, crop {crop}, "
         f"shift from {source_label} toward {session.style!r} (alpha {look.alpha}, beta {look.beta}, "
         f"detail {look.detail})")
    counting = None
    if start is None and duration is None:  # the exact count for the progress bar, found meanwhile
        counting = concurrent.futures.ThreadPoolExecutor(1).submit(video.count_frames, meta)
    meter = measures.Measures(session.style_lab, session.texture, every)
    state = {"previous": None, "frames": 0, "first": None, "last": None}
    bar = progress(total=estimate, desc="frames, about", unit="frame")

    def finish_batch(item):
        frames, parts = item
        for frame, part in zip(frames, parts):
            previous = state["previous"]
            previous = part if previous is None else look.smooth * previous + (1 - look.smooth) * part
            state["previous"] = previous
            out = compose(previous, look.detail, frame.full)
            out = even(out) if look.detail else out
            writer.write(out, frame.time, frame.duration)
            state["first"] = frame.time if state["first"] is None else state["first"]
            state["last"] = frame.time + frame.duration
            if measure:  # the meter keeps the frames it samples and returns at once for the others
                meter.add(frame.index, frame.full, out)
        state["frames"] += len(frames)
        if counting is not None and counting.done() and counting.result() and bar.desc != "frames":
            bar.total, bar.desc = counting.result(), "frames"
        bar.update(len(frames))

    began = time.perf_counter()
    reader_frames = video.read_frames(meta, session.tile_size, crop, full=full, input_args=decoder_args, **span)
    with atomic_path(output_path, suffix=".mp4") as tmp:
        reader = Producer(batched(reader_frames, session.batch_size))
        writer = video.VideoWriter(tmp, frame_size, meta.fps, (cw, ch), source=meta,
                                   audio_track=audio_track if meta.has_audio else None,
                                   inset=crop if inset else None, preset=preset, crf=crf, span=(start, duration),
                                   codec_args=codec_args)
        finisher = Consumer(finish_batch)
        try:
            for frames in reader:
                seconds = [f.time - meta.start for f in frames]  # keyframes count from the input's start
                parts = render(np.stack([f.image for f in frames]), look.alpha.at(seconds), look.beta.at(seconds))
                finisher.put((frames, parts.numpy()))
            finisher.finish()
            writer.close()
        except BaseException:
            finisher.abandon()
            writer.abort()
            raise
        finally:
            reader.close()
            bar.close()
    if state["frames"] == 0:
        raise UserError(f"{input_path}: no frames could be decoded" + (" in that span" if start or duration else ""))
    seconds = state["last"] - state["first"]
    return {"frames": state["frames"], "seconds": round(seconds, 6), **meter.summary(), "style": session.style,
            "size": [cw - cw % 2, ch - ch % 2], "render_seconds": round(time.perf_counter() - began, 3)}


def render_still(session, input_path, output_path):
    """Render one image at its own size through the same step as video frames."""
    look = session.look
    check_still(input_path, output_path)
    image = images.load_rgb(input_path)
    if image is None:
        raise UserError(f"{input_path}: not a readable image")
    tile = cv2.resize(image, session.tile_size, interpolation=cv2.INTER_AREA)
    source_mean, _ = session.source_mean(input_path, lambda: session.encode_mean([tile[None]]))
    render = session.render_fn(source_mean)
    part = render(tile[None], look.alpha.at([0.0]), look.beta.at([0.0])).numpy()[0]
    h, w = image.shape[:2]
    out = compose(part, look.detail, image) if look.detail else cv2.resize(
        images.to_uint8(part), (w, h), interpolation=cv2.INTER_CUBIC)
    meter = measures.Measures(session.style_lab, session.texture, every=1)
    meter.add(0, image, out)
    extension = os.path.splitext(output_path)[1].lower()
    ok, data = cv2.imencode(extension, cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"{output_path}: OpenCV could not encode it")
    with atomic_path(output_path, suffix=extension) as tmp, open(tmp, "wb") as f:
        f.write(data.tobytes())
    return {"frames": 1, "seconds": 0.0, **meter.summary(), "style": session.style, "size": [w, h]}


def kind_of(path):
    extension = os.path.splitext(path)[1].lower()
    if extension in STILL_EXTENSIONS:
        return "image"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    return None


def render_any(session, input_path, output_path, **video_options):
    if kind_of(input_path) == "image":
        return render_still(session, input_path, output_path)
    return render_video(session, input_path, output_path, **video_options)


def folder_inputs(input_dir, output_dir):
    """The names of the videos and images directly inside input_dir, sorted; refused when there
    are none or the output folder is the input folder."""
    if os.path.abspath(input_dir) == os.path.abspath(output_dir):
        raise UserError(f"{output_dir}: that is the input folder; give another output folder")
    names = sorted(n for n in os.listdir(input_dir)
                   if not n.startswith(".") and os.path.isfile(os.path.join(input_dir, n)) and kind_of(n))
    if not names:
        raise UserError(f"{input_dir}: no videos or images directly inside it")
    return names


def render_folder(session, input_dir, output_dir, **video_options):
    """Every video and image directly inside input_dir into output_dir under its own stem.

    Outputs that exist already are skipped, so a stopped batch resumes; a file that fails is
    reported and the others go on. Returns {"rendered": [...], "skipped": [...], "failed": [(name, why)]}.
    """
    names = folder_inputs(input_dir, output_dir)
    summary = {"rendered": [], "skipped": [], "failed": []}
    for number, name in enumerate(names, 1):
        stem = os.path.splitext(name)[0]
        target = os.path.join(output_dir, stem + (".mp4" if kind_of(name) == "video" else ".png"))
        head = f"[{number}/{len(names)}] {name}"
        if os.path.exists(target):
            info(f"{head}: skipped, {target} exists")
            summary["skipped"].append(name)
            continue
        info(f"{head} -> {target}")
        try:
            options = video_options if kind_of(name) == "video" else {}
            result = render_any(session, os.path.join(input_dir, name), target, **options)
            summary["rendered"].append((name, result))
        except Exception as e:  # one broken file must not stop the batch; Ctrl-C still does
            why = error_message(e)
            warn(f"{name}: failed: {why}")
            summary["failed"].append((name, why))
    return summary
