"""What a run computes on, said in its first lines: the GPUs TensorFlow sees, or "CPU only".

A GPU machine with the plain `tensorflow` package (no CUDA libraries on Linux) runs everything
on the CPU, hundreds of times slower, without a word; so when nvidia-smi answers but TensorFlow
sees no GPU, one warning gives the install command. Training runs also keep the line in
TensorBoard, so that a run's device is on record beside its curves.
"""
import shutil
import subprocess

from vae.cli import info, warn

INSTALL_HINT = "make demo GPU=1, or in your environment: pip install 'tensorflow[and-cuda]'"

_reported = []  # the lines of the last report(), for write_summary()


def nvidia_gpus():
    """Names of the GPUs nvidia-smi lists; [] when it is not on PATH, fails or lists none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        result = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []  # e.g. a driver that is installed but not loaded: TensorFlow could not use it either
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def tensorflow_gpus():
    """Names of the GPUs TensorFlow sees (the card's name where TensorFlow knows it)."""
    import tensorflow as tf  # here and below: the CPU-only checks (nvidia_gpus) must not load it
    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    return names


def describe(gpus, mixed_precision=None, xla=False, batch_size=None):
    """The device line: `device: 2 GPUs (NVIDIA A100, NVIDIA A100), mixed precision ..., XLA, batch size 64`."""
    if gpus:
        parts = [f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(gpus)})"]
    else:
        parts = ["CPU only"]
    if mixed_precision:
        parts.append(f"mixed precision {mixed_precision}")
    if xla:
        parts.append("XLA")
    if batch_size:
        parts.append(f"batch size {batch_size}")
    return "device: " + ", ".join(parts)


def mismatch_warning(tf_gpus, smi_gpus):
    """The warning for a card TensorFlow cannot use, or None."""
    if tf_gpus or not smi_gpus:
        return None
    return (f"nvidia-smi lists {len(smi_gpus)} NVIDIA GPU(s) ({', '.join(smi_gpus)}) but TensorFlow sees none, "
            f"so this runs on the CPU; install TensorFlow with CUDA: {INSTALL_HINT}")


def report(mixed_precision=None, xla=False, batch_size=None):
    """Print the device line (and the warning when a card is unused); returns the lines.

    mixed_precision is a Keras policy name ('mixed_float16'), shown when it is not float32.
    """
    gpus = tensorflow_gpus()
    if mixed_precision in ("float32", None):
        mixed_precision = None
    line = describe(gpus, mixed_precision, xla, batch_size)
    info(line)
    lines = [line]
    problem = None if gpus else mismatch_warning(gpus, nvidia_gpus())  # nvidia-smi only when it matters
    if problem:
        warn(problem)
        lines.append(f"warning: {problem}")
    _reported[:] = lines
    return lines


def write_summary(writer, step):
    """The last report() as a TensorBoard text summary `device` (nothing if none was made)."""
    if not _reported:
        return
    import tensorflow as tf
    with writer.as_default(step=step):
        tf.summary.text("device", "\n\n".join(_reported), step=step)
