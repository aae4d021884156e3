"""Re-rendering a video with its codes shifted toward a style, streamed and batched.

Per frame: z = mean(encoder(frame)) - alpha * mean_source + beta * mean_style, decoded, refined,
blended with the previous output frame, scaled back to the cropped input size. ffmpeg decodes
and scales the input to tile size in one thread, the models run on whole batches in one
tf.function call, and another thread smooths, measures and feeds the encoder, so the models
never wait on I/O and the video is never held in memory.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from vae import latent, video
from vae.cli import UserError, atomic_path, info, progress
from vae.pipeline import Consumer, Producer


def batched(frames, batch_size):
    batch = []
    for _, frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def default_batch_size():
    return 64 if tf.config.list_physical_devices("GPU") else 16


def video_mean_code(models, meta, crop, batch_size, samples=200):
    """The input's own mean code, from up to `samples` frames spread over the clip."""
    step = max(1, meta.frames_estimate // samples)
    total, count = 0.0, 0
    size = (models.width, models.height)
    for batch in batched(video.read_frames(meta, size, crop, step), batch_size):
        mean, _ = models.encode(tf.cast(batch, tf.float32) / 255.0)
        total += mean.numpy().sum(0, dtype=np.float64)
        count += len(batch)
    if count == 0:
        raise UserError(f"{meta.path}: no frames could be decoded")
    return (total / count).astype(np.float32)


def make_shifted_render(models, shift):
    """One tf.function per batch: uint8 frames in, shifted, decoded, refined float frames out."""
    shift = tf.constant(shift, tf.float32)
    spec = tf.TensorSpec([None, models.height, models.width, 3], tf.uint8)

    @tf.function(input_signature=[spec])
    def render(frames):
        mean, _ = models.encode(tf.cast(frames, tf.float32) / 255.0)
        return models.render(mean + shift)

    return render


@dataclasses.dataclass
class Palette:
    """Running measures on every `every`-th frame (uint8): colour distance of input and output
    to the style (mean Lab), and SSIM of output to input. Sampling keeps the CPU for the models."""
    style_lab: np.ndarray
    every: int = 4
    frames: int = 0
    measured: int = 0
    input_distance: float = 0.0
    output_distance: float = 0.0
    ssim: float = 0.0

    def add(self, inputs, outputs):
        first = (-self.frames) % self.every
        self.frames += len(inputs)
        inputs, outputs = inputs[first::self.every], outputs[first::self.every]
        if not len(inputs):
            return
        for i, o in zip(inputs, outputs):
            self.input_distance += float(np.linalg.norm(latent.mean_lab(i) - self.style_lab))
            self.output_distance += float(np.linalg.norm(latent.mean_lab(o) - self.style_lab))
        size = min(11, inputs.shape[1], inputs.shape[2])
        self.ssim += float(tf.reduce_sum(tf.image.ssim(outputs, inputs, max_val=255, filter_size=size)))
        self.measured += len(inputs)

    def summary(self):
        n = max(1, self.measured)
        return self.input_distance / n, self.output_distance / n, self.ssim / n


def mogrify(input_path, output_path, models, sources, style=None, alpha=0.25, beta=0.5, smooth=0.2,
            batch_size=None, crop="auto", inset=False, audio=True, preset="veryfast", crf=18,
            codec_args=None, decoder_args=()):
    """Render input_path to output_path; returns a dict of what was done and measured."""
    meta = video.probe(input_path)
    same_file = os.path.exists(output_path) and os.path.samefile(input_path, output_path)
    if same_file or os.path.abspath(input_path) == os.path.abspath(output_path):
        raise UserError(f"{output_path}: that is the input; give another output name")
    style = latent.pick_style(sources, style)
    crop = video.resolve_crop(meta, crop)
    batch_size = batch_size or default_batch_size()
    stem = os.path.splitext(os.path.basename(input_path))[0]
    if stem in sources:
        source_mean, source_label = np.asarray(sources[stem]["mean"], np.float32), f"trained source {stem!r}"
    else:
        info(f"{stem} is not a trained source: measuring its own mean code first")
        source_mean, source_label = video_mean_code(models, meta, crop, batch_size), "its own frames"
    shift = latent.shift_vector(source_mean, sources[style]["mean"], alpha, beta)
    render = make_shifted_render(models, shift)
    out_size = crop.size_of(meta.width, meta.height)
    palette = Palette(np.asarray(sources[style]["lab_mean"], np.float32)) if "lab_mean" in sources[style] else None
    info(f"{meta.path}: {meta.width}x{meta.height} at {float(meta.fps):.3g} fps, crop {crop}, "
         f"shift from {source_label} toward {style!r} (alpha {alpha}, beta {beta})")

    previous, frames_done = None, 0

    def finish_batch(item):
        nonlocal previous, frames_done
        inputs, outputs = item
        smoothed = np.empty_like(outputs)
        for i, frame in enumerate(outputs):
            previous = frame if previous is None else smooth * previous + (1 - smooth) * frame
            smoothed[i] = previous
        frames = (np.clip(smoothed, 0, 1) * 255 + 0.5).astype(np.uint8)
        for frame in frames:
            writer.write(frame)
        if palette is not None:
            palette.add(inputs, frames)
        bar.update(len(outputs))
        frames_done += len(outputs)

    frames = video.read_frames(meta, (models.width, models.height), crop, input_args=decoder_args)
    with atomic_path(output_path, suffix=".mp4") as tmp:
        reader = Producer(batched(frames, batch_size))
        writer = video.VideoWriter(tmp, (models.width, models.height), meta.fps, out_size, source=input_path,
                                   audio=audio and meta.has_audio, inset=crop if inset else None, preset=preset,
                                   crf=crf, codec_args=codec_args)
        finisher = Consumer(finish_batch)
        bar = progress(total=meta.frames_estimate, desc="frames", unit="frame")
        try:
            for batch in reader:
                finisher.put((batch, render(batch).numpy()))
            finisher.finish()
            writer.close()
        except BaseException:
            finisher.abandon()
            writer.abort()
            raise
        finally:
            reader.close()
            bar.close()
    result = {"frames": frames_done, "style": style, "size": out_size}
    if palette is not None:
        result["input_distance"], result["output_distance"], result["ssim"] = palette.summary()
    return result
