"""Choosing ffmpeg's H.264 encoder and video decoder: on the NVIDIA card when it works, else the CPU.

On a GPU the models outrun x264 and the CPU decoder several times over, so there the codecs set
a render's speed. The bundled ffmpeg has NVENC and the CUDA decoder compiled in, but they need a
card and its driver at run time; a one-frame trial (milliseconds either way) tells, and is only
made where an NVIDIA device is present at all. ffmpeg's own `-hwaccel auto` is no substitute: it
aborts on machines without the VA-API library.
"""
import functools
import glob
import re
import shutil
import subprocess

from vae.cli import UserError
from vae.ffmpeg import exe as ffmpeg_exe

ENCODERS = ("auto", "libx264", "h264_nvenc")
DECODERS = ("auto", "cpu", "cuda")


def _trial(args):
    """Run ffmpeg on one generated frame; returns None on success, else its first complaint."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if result.returncode == 0:
        return None
    lines = [re.sub(r"^(\[[^]]*\] *)+", "", line).strip() for line in result.stderr.splitlines()]
    return next((line for line in lines if line), f"ffmpeg exited with status {result.returncode}")


# NVENC refuses frames below about 145x49, so the trial frame is larger than that.
_ONE_FRAME = ["-f", "lavfi", "-i", "color=c=black:s=256x144:r=25", "-frames:v", "1", "-pix_fmt", "yuv420p"]


def nvidia_present():
    """Whether this machine has an NVIDIA device node or nvidia-smi: without either, no trial."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi"))


@functools.lru_cache(maxsize=None)
def nvenc_problem():
    """None when h264_nvenc encodes here, else why not (e.g. 'Cannot load libcuda.so.1')."""
    return _trial([*_ONE_FRAME, "-c:v", "h264_nvenc", "-f", "null", "-"])


@functools.lru_cache(maxsize=None)
def cuda_problem():
    """None when ffmpeg can open a CUDA device for decoding, else why not."""
    return _trial(["-init_hw_device", "cuda", *_ONE_FRAME, "-f", "null", "-"])


def x264_args(crf, preset):
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]


def nvenc_args(crf):
    # -cq in VBR mode with no bitrate target is NVENC's constant quality, its counterpart of -crf.
    return ["-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", str(crf), "-b:v", "0"]


def pick_encoder(name, crf, preset="veryfast"):
    """(ffmpeg output arguments that choose the encoder, one line saying which and why or None).

    `auto` takes h264_nvenc when a trial frame encodes, else libx264 (tried only where an NVIDIA
    device is present); an explicit h264_nvenc that cannot encode is a UserError.
    """
    if name not in ENCODERS:
        raise UserError(f"--encoder must be one of {', '.join(ENCODERS)}, not {name!r}")
    if name == "libx264":
        return x264_args(crf, preset), None
    if name == "auto" and not nvidia_present():
        return x264_args(crf, preset), f"encoder: libx264 on the CPU (-crf {crf})"
    problem = nvenc_problem() if nvidia_present() else "no NVIDIA device on this machine"

    if problem is None:
        return nvenc_args(crf), f"encoder: h264_nvenc on the GPU (constant quality -cq {crf})"
    if name == "h264_nvenc":
        raise UserError(f"--encoder h264_nvenc: ffmpeg cannot encode on an NVIDIA card here ({problem}); "
                        "use --encoder libx264 or auto")
    return x264_args(crf, preset), (f"encoder: libx264 on the CPU (-crf {crf}): "
                                    f"h264_nvenc failed a one-frame trial ({problem})")


def decoder_args(name):
    """ffmpeg input arguments for decoding: ['-hwaccel', 'cuda'] on the card, [] on the CPU.

    `auto` uses the card when ffmpeg can open it and says nothing otherwise; an explicit `cuda`
    that cannot is a UserError.
    """
    if name not in DECODERS:
        raise UserError(f"--decoder must be one of {', '.join(DECODERS)}, not {name!r}")
    if name == "cpu" or (name == "auto" and not nvidia_present()):
        return []
    problem = cuda_problem() if nvidia_present() else "no NVIDIA device on this machine"
    if problem is None:
        return ["-hwaccel", "cuda"]  # frames come back to memory for the crop and scale filters
    if name == "cuda":
        raise UserError(f"--decoder cuda: ffmpeg cannot open an NVIDIA card here ({problem}); "
                        "use --decoder cpu or auto")
    return []
