"""Just enough Matroska to hand ffmpeg raw RGB pictures, and 16-bit PCM sound, over a pipe, each
block with its own time (rawvideo alone has no timestamps, so a variable rate or a dropped frame
would shift everything after it).

One header, built here with or without its sound track; then any interleaving of `picture` and
`sound` blocks, each a cluster of its own, in a segment of unknown size (streamed)."""
import struct

TIME_SCALE_NS = 1000  # block times in microseconds
SEGMENT = bytes.fromhex("18538067") + b"\x01" + b"\xff" * 7  # of unknown size: streamed


def _size(n):
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return (n | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(n)


def element(element_id, data):
    if isinstance(data, int):
        data = data.to_bytes(max(1, (data.bit_length() + 7) // 8), "big")
    elif isinstance(data, str):
        data = data.encode()
    elif isinstance(data, float):
        data = struct.pack(">d", data)
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + _size(len(data)) + data


def ticks(seconds):
    return round(seconds * 1e9 / TIME_SCALE_NS)


def header(width, height, sound_rate=None, sound_channels=2):
    """The stream's start: track 1 the pictures (raw RGB, width x height), track 2 the sound
    (signed 16-bit little-endian PCM) when `sound_rate` is given."""
    e = element
    ebml = e(0x1A45DFA3, e(0x4286, 1) + e(0x42F7, 1) + e(0x42F2, 4) + e(0x42F3, 8) + e(0x4282, "matroska")
             + e(0x4287, 4) + e(0x4285, 2))
    info = e(0x1549A966, e(0x2AD7B1, TIME_SCALE_NS) + e(0x4D80, "vae") + e(0x5741, "vae"))
    picture = e(0xE0, e(0xB0, width) + e(0xBA, height) + e(0x2EB524, b"RGB\x18"))
    tracks = e(0xAE, e(0xD7, 1) + e(0x73C5, 1) + e(0x83, 1) + e(0x9C, 0) + e(0x86, "V_UNCOMPRESSED") + picture)
    if sound_rate:
        audio = e(0xE1, e(0xB5, float(sound_rate)) + e(0x9F, sound_channels) + e(0x6264, 16))
        tracks += e(0xAE, e(0xD7, 2) + e(0x73C5, 2) + e(0x83, 2) + e(0x9C, 0) + e(0x86, "A_PCM/INT/LIT") + audio)
    return ebml + SEGMENT + info + e(0x1654AE6B, tracks)


def picture(at, duration, size):
    """(head, tail): everything of one picture's cluster before and after its `size` bytes of
    pixels, shown from tick `at` for `duration` ticks; the caller writes head, pixels, tail, so
    the pixels are never copied."""
    block_head = b"\x81" + struct.pack(">hB", 0, 0)
    block = b"\xa1" + _size(len(block_head) + size) + block_head
    tail = element(0x9B, max(1, duration))
    group = b"\xa0" + _size(len(block) + size + len(tail))
    timestamp = element(0xE7, max(0, at))
    head = 0x1F43B675.to_bytes(4, "big") + _size(len(timestamp) + len(group) + len(block) + size + len(tail))
    return head + timestamp + group + block, tail


def sound(at, data):
    """One block of sound (track 2) from tick `at`."""
    block = element(0xA3, b"\x82" + struct.pack(">hB", 0, 0x80) + data)
    return element(0x1F43B675, element(0xE7, max(0, at)) + block)
