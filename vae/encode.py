"""Encoding: RGB pictures (and 16-bit PCM sound) handed to an ffmpeg process in one Matroska pipe,
each block with its own time, so a variable rate or a dropped frame keeps everything after it in
place. The sinks (vae/sinks.py) choose what ffmpeg makes of them: an MP4, a stream, a recording.
"""
import os
import subprocess

import numpy as np

from vae import ffmpeg, matroska
from vae.cli import UserError
from vae.probe import span_args

# Audio codecs an MP4 holds as they are; anything else (PCM, for one) becomes AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
KEYFRAME_SECONDS = 1  # live: a player that joins, or a recording cut anywhere, starts within a second or two


class Encoder:
    """One ffmpeg process reading Matroska on its stdin: `input_args` come before that input (its
    clock), `output_args` after it (more inputs, filters, codecs and the output). Pictures are
    `frame_size` (width, height) RGB; with `sound_rate` a PCM track (decode.SOUND_CHANNELS)
    follows. `offset` seconds are added to every time given (Matroska's clock starts at zero)."""

    def __init__(self, name, frame_size, output_args, input_args=(), sound_rate=None, sound_channels=2,
                 offset=0.0):
        width, height = frame_size
        self.name, self.frame_shape, self.offset = name, (height, width, 3), offset
        cmd = [ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *input_args,
               "-f", "matroska", "-i", "-", *output_args]
        # A session of its own: Ctrl-C in the terminal reaches us alone, and we finish the output in order.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.log = ffmpeg.Log(self.proc.stderr)
        self.send(matroska.header(width, height, sound_rate, sound_channels))

    def send(self, *chunks):
        try:
            for chunk in chunks:
                self.proc.stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            self.proc.wait()
            raise UserError(f"{self.name}: ffmpeg stopped encoding: {self.log.reason() or 'no reason given'}")

    def picture(self, frame, seconds, duration):
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {self.frame_shape}, got {frame.dtype} {frame.shape}")
        head, tail = matroska.picture(matroska.ticks(seconds + self.offset), matroska.ticks(duration), frame.nbytes)
        self.send(head, np.ascontiguousarray(frame).data, tail)

    def sound(self, seconds, data):
        self.send(matroska.sound(matroska.ticks(seconds + self.offset), data))

    def finish(self, timeout=None):
        """Close the pipe and wait for ffmpeg; its own error is raised as one line."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        if status != 0:
            raise UserError(f"{self.name}: ffmpeg failed to encode: {self.log.reason() or status}")

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def x264_args(crf, preset):
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]


def live_codec_args(codec_args, crf, preset):
    """The encoder for a live output: x264 tuned for zero latency, or NVENC's low-latency preset
    when vae.codecs picked the card; a keyframe every KEYFRAME_SECONDS either way."""
    keys = ["-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})"]
    if codec_args and "h264_nvenc" in codec_args:
        return ["-c:v", "h264_nvenc", "-preset", "p2", "-tune", "ll", "-rc", "vbr", "-cq", str(crf), "-b:v", "0",
                "-bf", "0", *keys]
    return [*x264_args(crf, preset), "-tune", "zerolatency", *keys]


def mp4_encoder(path, frame_size, out_size, source=None, audio_track=None, inset=None, span=(None, None),
                codec_args=None, crf=18, preset="medium"):
    """An Encoder writing an H.264 MP4 (yuv420p, even size, faststart) at `path`.

    ffmpeg scales the pictures to `out_size` (made even), so Python need not handle full-size
    frames. `source` is the VideoInfo of the original: its audio track `audio_track` is muxed in
    (copied when MP4 holds its codec, else AAC), and with `inset` (a Crop of the source) the
    original frame appears small in the bottom-right corner, composed by ffmpeg at full quality
    and matched to each frame by time. `span` = (start, duration) cuts the source's sound and
    inset to a segment. Times given are on the source's clock; the output starts at zero.
    """
    offset = 10.0  # seconds added to every time in the pipe, taken off again by -itsoffset: no time is below zero
    ow, oh = out_size
    ow, oh = ow - ow % 2, oh - oh % 2
    start, duration = span
    origin = (source.start if source else 0.0) + (start or 0.0)
    args = [*span_args(start, duration), "-i", source.path] if source else []
    main = f"[0:v]scale={ow}:{oh}:flags=bicubic,setsar=1"
    if inset is not None:
        iw, ih = max(2, ow // 4 // 2 * 2), max(2, oh // 4 // 2 * 2)
        margin = max(2, ow // 50 // 2 * 2)  # even: yuv420 overlays land on even pixels
        shown = ",".join(source.display_filters() + [inset.filter(source.width, source.height)])
        graph = (f"{main}[main];[1:v]{shown},scale={iw}:{ih}:flags=area[small];"
                 f"[main][small]overlay=x=W-w-{margin}:y=H-h-{margin}:eof_action=repeat:ts_sync_mode=nearest[v]")
    else:
        graph = f"{main}[v]"
    args += ["-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough"]
    if source and audio_track is not None:
        if not 0 <= audio_track < len(source.audio_codecs):
            raise UserError(f"{source.path}: has no audio track {audio_track} (it has {len(source.audio_codecs)})")
        codec = source.audio_codecs[audio_track]
        args += ["-map", f"1:a:{audio_track}"]
        args += ["-c:a", "copy"] if codec in MP4_AUDIO else ["-c:a", "aac", "-b:a", "192k"]
    # A fine encoder clock: ffmpeg would otherwise round each frame's time to the guessed rate.
    args += ["-output_ts_offset", f"{-origin:.6f}", "-enc_time_base:v", "1/90000"]
    args += codec_args or x264_args(crf, preset)
    args += ["-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", path]
    return Encoder(path, frame_size, args, input_args=["-copyts", "-itsoffset", f"{-offset}"], offset=offset)


def write_video(path, frames, fps, sound=None, **kwargs):
    """Encode a list of equally sized RGB frames at a constant rate (previews, synthetic clips);
    `sound` is a sound file to mux in."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    encoder = mp4_encoder(path, (w, h), (w, h), **kwargs)
    try:
        for number, frame in enumerate(frames):
            encoder.picture(frame, number / float(fps), 1 / float(fps))
    except BaseException:
        encoder.kill()
        raise
    encoder.finish()
    if sound:
        _mux_sound(path, sound)


def _mux_sound(path, sound):
    tmp = path + ".mux.mp4"
    result = subprocess.run([ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", path,
                             "-i", sound, "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                             "-b:a", "192k", "-shortest", "-movflags", "+faststart", tmp],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"{path}: ffmpeg could not add the sound: {result.stderr.strip()[-300:]}")
    os.replace(tmp, path)
