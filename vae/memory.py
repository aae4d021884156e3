"""How a process that renders or trains allocates memory: freed memory is kept for the next batch.

Each batch allocates and frees the same large buffers again (TensorFlow's activations, full-size
frames, the measures' images). By default TensorFlow's CPU allocator hands them to malloc, and
glibc returns large freed blocks to the system, so every batch pays for the same memory again in
page faults: about a million per training measurement, a fifth of its time, and 25 of the 41 ms
of a 720p SSIM (README, "Memory kept between batches"). TensorFlow's own BFC allocator keeps
what it got, as it does on a GPU; malloc is told to keep freed blocks too. The price is memory
held: a 400-frame 720p render with --detail 1 peaked at 2,341 MB against 2,140.
"""
import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_FREED_BYTES = 1 << 30  # freed memory kept at the top of the heap before any is returned
MMAP_ABOVE_BYTES = 32 << 20  # only blocks larger than this get their own mapping (glibc's most)


def keep_freed_memory():
    """Before TensorFlow loads: its CPU allocator keeps memory (TF_CPU_ALLOCATOR_USE_BFC, unless
    the environment says otherwise), and so does malloc, where it is glibc's."""
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator as it is
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE_BYTES)
    mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
