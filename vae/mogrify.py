"""Re-rendering videos, stills and folders with their codes shifted toward a style.

Every frame, at render size (the contract's formula):

    z     = mean(encoder(frame))
    shift = -alpha * mean_source + beta * mean_style       (alpha, beta at the frame's time)
    z'    = (1 - match) * (z + shift) + match * matched(z + shift)   (spatial models, vae/match.py)
    part  = render(z') - detail * render(z)
    part' = smooth * part'(previous frame) + (1 - smooth) * part
    out   = resize(part', output size) + detail * frame    (frame at its own resolution)

The render size is the tile size for a global model and the frame's own shown size (times the
scale it learned at) for a spatial one, padded to a multiple of its downsample factor and cut
back. This module holds what is asked (Look, VideoOptions), the models of a run (Session) and the
styler (the batched model step, then smoothing and `compose`); a file, a still or a folder is
rendered by vae/render.py's one loop from a source (vae/sources.py) into a sink (vae/sinks.py),
as a live stream is (vae/live.py).

TensorFlow is imported only inside the functions that run the models, so that `check_request`
can refuse a bad command line before TensorFlow's seconds of start-up.
"""
import concurrent.futures
import dataclasses
import functools
import os
import re
import time

import cv2
import numpy as np

from vae import decode, images, latent, match, measures, probe, render, safety, sinks, sources
from vae.cli import UserError, error_message, info, warn

STILL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg",
                    ".gif", ".wmv", ".flv", ".3gp", ".mxf", ".dv", ".ogv")
# Pixels per model call on the CPU (on a GPU, four times this): a spatial model's activations grow
# with the frame, so big frames are batched fewer at a time (a 4K frame alone, within 24 GiB).
PIXELS_PER_CALL = 16 * 640 * 360
OWN_MEAN_FRAMES = 48  # frames spread over a clip for its own mean code, when it is no trained source


@dataclasses.dataclass
class Look:
    """What the user asked for, the same for every file of a run."""
    alpha: latent.Strength
    beta: latent.Strength
    detail: float = 0.0
    smooth: float = 0.2
    styles: list = None  # --style texts; None: the largest image source
    render_size: tuple = None  # a spatial model's --render-size: (width, height) box, or (side, side)
    match: latent.Strength = None  # a spatial model's --match; None: none

    @property
    def matching(self):
        """Whether --match asks for any matching (0 throughout is exactly the plain render)."""
        return self.match is not None and bool(np.any(self.match.values))

    def describe(self):
        """The strengths, as the info lines of a render show them."""
        return (f"alpha {self.alpha}, beta {self.beta}, detail {self.detail}"
                + (f", match {self.match}" if self.matching else ""))


@dataclasses.dataclass
class VideoOptions:
    """How one video is read and written (the same for every video of a folder)."""
    start: float = None
    duration: float = None
    crop: object = "auto"  # "auto", or a probe.Crop
    inset: bool = False
    audio_track: int = 0  # None: no sound
    preset: str = "veryfast"
    crf: int = 18
    codec_args: list = None
    decoder_args: tuple = ()
    measure: bool = True


def parse_render_size(text):
    """`WxH` (a box the frame is fitted into, its aspect kept) or `N` (the longer side at most N)."""
    if text is None:
        return None
    found = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not found:
        raise UserError(f"--render-size {text}: give WIDTHxHEIGHT (for example 640x360) or a longest side")
    width = int(found.group(1))
    height = int(found.group(2) or width)
    if min(width, height) < 16:
        raise UserError(f"--render-size {text}: must be at least 16 pixels each way")
    return width, height


def parse_match(text):
    """--match: a number from 0 to 1 or keyframes, as --beta."""
    strength = latent.Strength(text, "--match")
    if not all(0 <= v <= 1 for v in strength.values):
        raise UserError(f"--match {text}: each value must be from 0 to 1")
    return strength


def fit(size, box, even_sides=True, scale=1.0):
    """`size` times `scale`, then scaled down (never up) to fit inside `box`, aspect kept (even
    sides for video)."""
    width, height = size
    if box is not None:
        scale = min(scale, box[0] / width, box[1] / height)
    if scale != 1:
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    return (width - width % 2, height - height % 2) if even_sides else (width, height)


def spatial_render_scale(learned, look):
    """A spatial model's render scale without --render-size: the scale its footage was cut at
    (model.json's render_scale, `learned`), else 1; None with --render-size."""
    return (learned or 1.0) if look.render_size is None else None


def spatial_render_size(shown, learned, look, even_sides=True):
    """The size a spatial model renders a frame shown at `shown` at (also before TensorFlow
    loads: a live source scales its pictures to it)."""
    return fit(shown, look.render_size, even_sides, spatial_render_scale(learned, look) or 1.0)


def default_batch_size():
    import tensorflow as tf
    return 64 if tf.config.list_physical_devices("GPU") else 16


def mirror_pad(x, d):
    """Float images [N,H,W,3] padded at the bottom and right by mirroring to a multiple of d: a
    spatial model's code map then covers them exactly, with no zero border at the edges."""
    import tensorflow as tf
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    return tf.pad(x, [[0, 0], [0, (-height) % d], [0, (-width) % d], [0, 0]], mode="SYMMETRIC")


def make_render(models, detail, matching=False):
    """The batched model step: uint8 frames, per-frame alpha and beta, the source and style means
    and `own_weight` in; the float `part` at the frames' size and the source mean used out. With
    `matching`, also per-frame --match, the style's code bank and the previous frame's choices
    in, and these frames' last choices out (vae/match.py).

    The source mean used is `(1 - own_weight) * source_mean + own_weight * mean(codes of these
    frames)`: 0 for a known mean, more for a live input's running mean of its own codes. A
    spatial model takes frames of any size: they are padded (mirrored) to a multiple of its
    downsample factor and the render is cut back. With detail the unshifted codes are rendered
    in the same call (one batch of twice the size), so the models run once per batch."""
    import tensorflow as tf
    spatial = models.latent == "spatial"
    shape = [None, None, None, 3] if spatial else [None, models.height, models.width, 3]
    code = tf.TensorSpec([models.codes], tf.float32)
    strength = tf.TensorSpec([None], tf.float32)
    signature = [tf.TensorSpec(shape, tf.uint8), strength, strength, code, code, tf.TensorSpec([], tf.float32)]

    def step(frames, alpha, beta, source_mean, style_mean, own_weight, matched=None):
        x = tf.cast(frames, tf.float32) / 255.0
        size = None
        if spatial:
            size = (tf.shape(x)[2], tf.shape(x)[1])
            x = mirror_pad(x, models.downsample)
        z, _ = models.encode(x)
        axes = list(range(len(z.shape) - 1))  # frames and a code map's positions
        source_mean = (1 - own_weight) * source_mean + own_weight * tf.reduce_mean(z, axes)
        per_frame = [-1] + [1] * (len(z.shape) - 1)  # the means broadcast over a code map's positions
        shifted = z - tf.reshape(alpha, per_frame) * source_mean + tf.reshape(beta, per_frame) * style_mean
        extra = ()
        if matched is not None:
            shifted, choices = match.apply(shifted, *matched)
            extra = (choices,)
        if not detail:
            return (models.render(shifted, size), source_mean) + extra
        both = models.render(tf.concat([shifted, z], 0), size)
        n = tf.shape(z)[0]
        return (both[:n] - detail * both[n:], source_mean) + extra

    # No AutoGraph: the step has no Python control flow on tensors, and converting it took two
    # seconds of a live run's start-up.
    if not matching:
        return tf.function(step, input_signature=signature, autograph=False)
    bank = tf.TensorSpec([None, match.NEIGHBOURHOOD, match.NEIGHBOURHOOD, models.codes], tf.float32)

    @tf.function(input_signature=signature + [strength, bank, tf.TensorSpec([None, None], tf.int32)],
                 autograph=False)
    def render_matched(frames, alpha, beta, source_mean, style_mean, own_weight, strength, bank, previous):
        return step(frames, alpha, beta, source_mean, style_mean, own_weight, (strength, bank, previous))

    return render_matched


def compose(part, detail, full=None):
    """`out = resize(part, size of full) + detail * full`, uint8; with detail 0 the part itself
    (ffmpeg scales it to the output size in the encoder's process, when it is not that size)."""
    if not detail:
        return images.to_uint8(part)
    h, w = full.shape[:2]
    part = np.asarray(part, np.float32)
    up = part if part.shape[:2] == (h, w) else cv2.resize(part, (w, h), interpolation=cv2.INTER_CUBIC)
    # One OpenCV pass in place of NumPy's four: scaled, added, rounded and saturated to uint8.
    return cv2.addWeighted(up, 255.0, full, float(detail), 0.0, dtype=cv2.CV_8U)


def even(frame):
    h, w = frame.shape[:2]
    return frame[:h - h % 2, :w - w % 2]


class Session:
    """The models and embeddings of one run, loaded once for every file rendered."""

    def __init__(self, models, sources, look, batch_size=None):
        self.models, self.sources, self.look = models, sources, look
        self.batch_size = batch_size or default_batch_size()
        self.style, self.style_mean, self.style_lab = latent.mix_styles(sources, look.styles)
        self.spatial = models.latent == "spatial"
        self._render = None
        self.weights, self.folder = latent.style_weights(sources, look.styles), getattr(models, "folder", None) or "."
        # The style's own code neighbourhoods, for --match (checked against the folder's sources).
        self.bank = match.style_bank(self.folder, self.weights, list(sources), models.codes) if look.matching else None

    @functools.cached_property
    def texture(self):
        """The style's tiles for the texture measure, drawn when first measured (a live run never
        is); an older folder has none (said once, here)."""
        reference = measures.style_reference(self.folder, self.weights)
        if reference is None:
            info(f"the models folder has no tiles of {self.style!r} in tiles.npz (evaluate_embeddings.py writes "
                 "them): texture is left out of the measures")
        return reference

    @property
    def tile_size(self):
        return self.models.width, self.models.height

    @property
    def render(self):
        """The model step, traced once for the whole run."""
        if self._render is None:
            self._render = make_render(self.models, self.look.detail, self.bank is not None)
        return self._render

    @property
    def render_scale(self):
        """The share of the frame's shown size that a spatial model renders at without
        --render-size: the scale its footage was cut at (model.json's render_scale), else 1."""
        return spatial_render_scale(self.models.render_scale, self.look) if self.spatial else None

    def render_size(self, shown, even_sides=True):
        """The size the models see for a frame shown at `shown`: a spatial model's is the frame's
        own times its render scale (or fitted into --render-size), a global model's the tile."""
        if not self.spatial:
            return self.tile_size
        return spatial_render_size(shown, self.models.render_scale, self.look, even_sides)

    def scale_note(self):
        """How the render size was chosen, for the info line: a learned render scale is named."""
        if not self.spatial:
            return ""
        if self.render_scale is None:
            return " (--render-size)"
        learned = ", the scale it learned (model.json)" if self.models.render_scale else ""
        return f" (render scale {self.render_scale:g}{learned})"

    def frames_per_call(self, render_size):
        """At most --batch-size frames, fewer when the frames are big (see PIXELS_PER_CALL)."""
        import tensorflow as tf
        budget = PIXELS_PER_CALL * (4 if tf.config.list_physical_devices("GPU") else 1)
        pixels = render_size[0] * render_size[1] * (2 if self.look.detail else 1)
        return max(1, min(self.batch_size, budget // pixels))

    def styler(self, source_mean, shown, even_sides=True, start=0.0):
        return Styler(self, source_mean, shown, even_sides, start)

    def source_mean(self, path, own_mean):
        """The trained source named by the file's stem, or else the input's own mean code."""
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in self.sources:
            return np.asarray(self.sources[stem]["mean"], np.float32), f"trained source {stem!r}"
        info(f"{stem} is not a trained source: its own mean code stands in for it")
        return own_mean(), "its own frames"

    def encode_mean(self, batches):
        """The mean code of uint8 frame batches (over frames, and a code map's positions)."""
        import tensorflow as tf
        total, count = 0.0, 0
        for batch in batches:
            x = tf.cast(np.stack(batch), tf.float32) / 255.0
            if self.spatial:  # the codes the render sees: of the padded frames
                x = mirror_pad(x, self.models.downsample)
            mean, _ = self.models.encode(x)
            mean = mean.numpy()
            total += mean.reshape(len(mean), -1, mean.shape[-1]).mean(1).sum(0, dtype=np.float64)
            count += len(mean)
        return None if count == 0 else (total / count).astype(np.float32)


class Styler:
    """The batched model step, then smoothing and compose, for one sequence of frames.

    `run(frames)` calls the models on a batch (the caller's thread); `finish(frames, parts)` blends
    each part with the previous frame's and adds the detail, in order (another thread may do it);
    `style(frames)` is both. Frames are vae.decode.Frame: `image` at the render size, `full` the
    shown frame when that is another size (needed for --detail). Keyframe times count from
    `start` (None: the first frame's time). `source_mean` None: a running mean of the frames' own
    codes (live), a plain average over the first `horizon` frames and then slowly forgetting."""

    def __init__(self, session, source_mean, shown, even_sides=True, start=0.0, horizon=750):
        self.session, self.look = session, session.look
        self.render_size = session.render_size(shown, even_sides)
        self.even_sides = even_sides  # video: yuv420p needs them; a still keeps its own size
        self.output_size = fit(shown, None, even_sides)
        self.same_size = self.render_size == self.output_size
        self.batch_size = session.frames_per_call(self.render_size)
        self.start = start
        self.running = source_mean is None
        self.source_mean = np.zeros(session.models.codes, np.float32) if self.running else \
            np.asarray(source_mean, np.float32)
        self.style_mean = np.asarray(session.style_mean, np.float32)
        self.seen, self.horizon, self.previous = 0, horizon, None
        if session.bank is not None:  # --match: no choice yet at any position of the code map
            d = session.models.downsample
            self.choices = np.full((-(-self.render_size[1] // d), -(-self.render_size[0] // d)), -1, np.int32)

    @property
    def frame_size(self):
        """The size of the frames `finish` gives: the output size, except with detail 0 at
        another render size (then the part itself, scaled by the encoder)."""
        return self.output_size if (self.look.detail or self.same_size) else self.render_size

    @property
    def needs_full(self):
        """Whether the source must hand over the shown frame beside the render-size one."""
        return bool(self.look.detail) and not self.same_size

    def warm_up(self):
        """Trace the model step now, so that the first frames of a live input do not wait for it."""
        width, height = self.render_size
        self.session.render(np.zeros((1, height, width, 3), np.uint8), np.zeros(1, np.float32),
                            np.zeros(1, np.float32), self.source_mean, self.style_mean, np.float32(0),
                            *self._matching([0.0]))

    def _matching(self, seconds):
        """The model step's --match arguments for frames at `seconds` (none without --match)."""
        if self.session.bank is None:
            return ()
        return self.look.match.at(seconds), self.session.bank, self.choices

    def run(self, frames):
        if self.start is None:
            self.start = frames[0].time
        seconds = [f.time - self.start for f in frames]
        weight = len(frames) / (min(self.seen, self.horizon) + len(frames)) if self.running else 0.0
        parts, mean, *choices = self.session.render(
            np.stack([f.image for f in frames]), self.look.alpha.at(seconds), self.look.beta.at(seconds),
            self.source_mean, self.style_mean, np.float32(weight), *self._matching(seconds))
        if choices:
            self.choices = choices[0].numpy()
        if self.running:
            self.source_mean, self.seen = mean.numpy(), self.seen + len(frames)
        return parts.numpy()

    def finish(self, frames, parts):
        smooth, detail, out = self.look.smooth, self.look.detail, []
        for frame, part in zip(frames, parts):
            self.previous = part if self.previous is None else smooth * self.previous + (1 - smooth) * part
            shown = frame.full if frame.full is not None else frame.image
            out.append(compose(self.previous, detail, shown) if detail else compose(self.previous, 0))
            if self.even_sides:
                out[-1] = even(out[-1])
        return out

    def style(self, frames):
        return self.finish(frames, self.run(frames))


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


def check_video(input_path, output_path, options):
    """A video input and its output checked before anything is rendered; returns its probe."""
    if kind_of(output_path) == "image":
        raise UserError(f"{output_path}: a video is rendered to an .mp4 file")
    meta = probe.probe(input_path)
    check_output(input_path, output_path)
    check_span(meta, options.start, options.duration)
    check_audio_track(meta, options.audio_track)
    return meta


def check_still(input_path, output_path):
    check_output(input_path, output_path)
    if os.path.splitext(output_path)[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{output_path}: an image is written as .png or .jpg")


@dataclasses.dataclass
class Request:
    """A command line checked once, before TensorFlow: what safety.read_models_folder found, the
    sources, and for a single video its probe (so that it is not probed again)."""
    found: tuple
    sources: dict
    meta: object = None


def check_request(input_path, output_path, models_dir, look, options=VideoOptions()):
    """Everything about a run that needs no TensorFlow, checked before the script imports it, so a
    mistyped name fails at once: the input and output, the models folder's JSON files (model.json,
    and embeddings.json against its code count), the --style names against the sources, and the
    options only a spatial model has."""
    meta = None
    if os.path.isdir(input_path):
        folder_inputs(input_path, output_path)
    elif not os.path.exists(input_path):
        raise UserError(f"{input_path}: no such file")
    elif kind_of(input_path) == "image":
        check_still(input_path, output_path)
    else:
        meta = check_video(input_path, output_path, options)
    found, sources = check_models(models_dir, look)
    if os.path.isfile(measures.tiles_path(models_dir)):
        safety.check_tiles(measures.tiles_path(models_dir), list(sources))
    return Request(found, sources, meta)


def check_models(models_dir, look):
    """The models folder's JSON files (model.json, and embeddings.json against its code count),
    the options only a spatial model has, and the --style names against the sources, for a file's
    run and a live one alike. Returns (safety.read_models_folder's answer, the sources)."""
    found = safety.read_models_folder(models_dir)
    check_look(models_dir, found[0], look)
    sources = latent.load_embeddings(models_dir, found[0]["codes"])
    latent.style_weights(sources, look.styles)  # refuses unknown names now; the Session mixes them once
    return found, sources


def check_look(models_dir, meta, look):
    """The options only a spatial model has (`meta`: its model.json), and --match's code bank."""
    if meta.get("latent", "global") != "spatial":
        for given, name in ((look.render_size, "--render-size"), (look.matching or None, "--match")):
            if given is not None:
                raise UserError(f"{name} is for a spatial model; this one renders at its tile size "
                                f"{meta['width']}x{meta['height']}")
    if look.matching and not os.path.isfile(match.bank_path(models_dir)):
        raise UserError(f"{match.bank_path(models_dir)}: missing; --match needs the style's own codes: run "
                        f"evaluate_embeddings.py --data ... --models {models_dir} again")


def new_meter(session, options, frames_estimate):
    """The measures on a few hundred frames at most, spread over the video, and on at least about
    40 frame pairs where the clip has them: flicker over fewer pairs is mostly chance."""
    every = max(1, min(8, frames_estimate // 40), frames_estimate // 300)
    return measures.Measures(session.style_lab, session.texture, every) if options.measure else None


def render_video(session, input_path, output_path, options=VideoOptions(), meta=None):
    """Render one video; returns the measures and what was done (`options.measure=False`:
    without them, for the benchmark's comparison). `meta`: its probe, when checked already."""
    meta = meta or check_video(input_path, output_path, options)
    span = dict(start=options.start, duration=options.duration)
    crop = probe.resolve_crop(meta, options.crop, **span)
    shown = crop.size_of(meta.width, meta.height)
    render_size = session.render_size(shown)

    def own_mean():
        estimate = meta.frames_estimate if options.duration is None else options.duration * float(meta.fps)
        step = max(1, int(estimate) // OWN_MEAN_FRAMES)
        frames = decode.read_frames(meta, render_size, crop, step, **span)
        mean = session.encode_mean([f.image for f in batch] for batch in
                                   sources.batched(frames, session.frames_per_call(render_size)))
        if mean is None:
            raise UserError(f"{input_path}: no frames could be decoded")
        return mean

    source_mean, source_label = session.source_mean(input_path, own_mean)
    styler = session.styler(source_mean, shown, start=meta.start)  # keyframes count from the input's start
    info(f"{meta.path}: {meta.width}x{meta.height} as shown at {float(meta.fps):.3g} fps, crop {crop}, rendered at "
         f"{render_size[0]}x{render_size[1]}{session.scale_note()} ({styler.batch_size} a call), shift from "
         f"{source_label} toward {session.style!r} ({session.look.describe()})")
    estimate = meta.frames_estimate if options.duration is None else max(1, round(options.duration * float(meta.fps)))
    counting = None
    if options.start is None and options.duration is None:  # the exact count for the progress bar, found meanwhile
        counting = concurrent.futures.ThreadPoolExecutor(1).submit(probe.count_frames, meta)
    measured = new_meter(session, options, estimate)
    tally = render.Tally()
    observers = [tally, render.Progress(estimate, counting)] + ([render.Measured(measured)] if measured else [])
    full = 1 if styler.needs_full or (measured and not styler.same_size) else 0
    began = time.perf_counter()
    source = sources.VideoSource(meta, render_size, styler.batch_size, crop, full, decoder_args=options.decoder_args,
                                 **span)
    try:
        sink = sinks.Mp4Sink(output_path, styler.frame_size, meta.fps, styler.output_size, source=meta,
                             audio_track=options.audio_track if meta.has_audio else None,
                             inset=crop if options.inset else None, span=(options.start, options.duration),
                             codec_args=options.codec_args, crf=options.crf, preset=options.preset)
    except BaseException:
        source.close()
        raise
    render.run(source, styler, [sink], observers)
    if tally.frames == 0:
        raise UserError(f"{input_path}: no frames could be decoded" + (" in that span" if options.start or
                                                                       options.duration else ""))
    return {"frames": tally.frames, "seconds": tally.seconds, **(measured.summary() if measured else {}),
            "style": session.style, "size": list(styler.output_size), "render_size": list(render_size),
            "render_seconds": round(time.perf_counter() - began, 3)}


def render_still(session, input_path, output_path):
    """Render one image at its own size through the same styler as video frames."""
    check_still(input_path, output_path)
    image = images.load_rgb(input_path)
    if image is None:
        raise UserError(f"{input_path}: not a readable image")
    h, w = image.shape[:2]
    render_size = session.render_size((w, h), even_sides=False)
    small = cv2.resize(image, render_size, interpolation=cv2.INTER_AREA) if render_size != (w, h) else image
    source_mean, _ = session.source_mean(input_path, lambda: session.encode_mean([[small]]))
    styler = session.styler(source_mean, (w, h), even_sides=False)
    measured = measures.Measures(session.style_lab, session.texture, every=1)
    source = sources.StillSource(small, None if styler.same_size else image)
    render.run(source, styler, [sinks.ImageSink(output_path, (w, h))], [render.Measured(measured)])
    return {"frames": 1, "seconds": 0.0, **measured.summary(), "style": session.style, "size": [w, h],
            "render_size": list(render_size)}


def kind_of(path):
    extension = os.path.splitext(path)[1].lower()
    if extension in STILL_EXTENSIONS:
        return "image"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    return None


def render_any(session, input_path, output_path, options=VideoOptions(), meta=None):
    if kind_of(input_path) == "image":
        return render_still(session, input_path, output_path)
    return render_video(session, input_path, output_path, options, meta)


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


def render_folder(session, input_dir, output_dir, options=VideoOptions()):
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
            result = render_any(session, os.path.join(input_dir, name), target, options)
            summary["rendered"].append((name, result))
        except Exception as e:  # one broken file must not stop the batch; Ctrl-C still does
            why = error_message(e)
            warn(f"{name}: failed: {why}")
            summary["failed"].append((name, why))
    return summary
