"""mogrify_video.py --live on loopback, with ffmpeg alone as the camera and the player: frames
come back by their index, a slow model drops frames instead of falling behind, Ctrl-C leaves a
playable recording, a dropped input is reconnected, and the sound stays with the picture."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from conftest import ROOT, assert_error_before_tensorflow, assert_one_line_error, decode, run_script
from vae import ffmpeg, probe
from vae.sinks import LiveSink
from vae.sources import LiveSound
from vae.decode import SOUND_BYTES, SOUND_CHANNELS, SOUND_RATE, Connection, Sound, read_frames

W, H, FPS, BITS = 160, 90, 25, 8
# Frame N shows N in binary as 8 vertical bars (bit k bright in bar k): it survives two H.264
# encodes, and 256 frames are 10 s before an index repeats.
PATTERN = (f"color=black:s={W}x{H}:r={FPS},format=yuv420p,"
           rf"geq=lum='if(bitand(N\,pow(2\,floor(X*{BITS}/W)))\,235\,16)':cb=128:cr=128")
# A quiet tone with a loud click every CLICK seconds: 32 frames, so that the frame numbers' cycle of
# 256 frames (10.24 s) holds a whole number of clicks. A recording that starts in a later cycle
# (the run was slow to start) then still puts each click at a frame that shows a multiple of 32:
# with clicks every second, each cycle would shift the reckoning by 0.24 s.
CLICK = 32 / FPS
SOUND = rf"aevalsrc='0.1*sin(2*PI*440*t)+if(lt(mod(t\,{CLICK})\,0.004)\,0.8\,0)':s=48000:c=mono"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(port, seconds, sound=True):
    """An ffmpeg 'camera' streaming the numbered frames (and the clicks) over udp in real time."""
    graph = f"{PATTERN}[out0]" + (f";{SOUND}[out1]" if sound else "")
    cmd = [ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", graph,
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
           "-crf", "10", *(["-c:a", "aac"] if sound else []), "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    return subprocess.Popen(cmd)


def receive(port, path):
    """An ffmpeg 'player' recording what arrives on a udp port, as it is."""
    return subprocess.Popen([ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                             "-i", f"udp://127.0.0.1:{port}", "-c", "copy", "-f", "mpegts", str(path)])


class Live:
    """mogrify_video.py running in the background, its stderr collected line by line."""

    def __init__(self, *args, env=None, slow=None):
        # slow: seconds more per batch (tests/slow_mogrify.py), for a model that cannot keep up
        script = ["mogrify_video.py"] if slow is None else [os.path.join("tests", "slow_mogrify.py"), str(slow)]
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, script[0]), *script[1:], *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                     env={**os.environ, **(env or {})})
        self.lines, self.changed, self.stdout = [], threading.Condition(), []
        self.readers = [threading.Thread(target=self._collect, daemon=True),
                        threading.Thread(target=lambda: self.stdout.append(self.proc.stdout.read()), daemon=True)]
        for reader in self.readers:
            reader.start()

    def _collect(self):
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        self.proc.wait()
        with self.changed:  # ended: a waiter need not sit out its timeout
            self.changed.notify_all()

    def wait_for(self, text, timeout=90):
        with self.changed:
            assert self.changed.wait_for(lambda: any(text in line for line in self.lines) or
                                         self.proc.poll() is not None, timeout), self.stderr
        assert any(text in line for line in self.lines), self.stderr

    def finish(self, timeout=60):
        self.proc.wait(timeout)
        for reader in self.readers:  # to the end of both pipes
            reader.join(10)
        return self.proc.returncode, "".join(self.stdout)

    @property
    def stderr(self):
        return "".join(self.lines)


def indices(frames):
    """The number each frame shows, read from its bars (None where they are unreadable)."""
    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        bars = [frame[h // 4:3 * h // 4, int((k + 0.3) * w / BITS):int((k + 0.7) * w / BITS)].mean()
                for k in range(BITS)]
        clear = all(v < 70 or v > 180 for v in bars)
        out.append(sum(1 << k for k, v in enumerate(bars) if v > 128) if clear else None)
    return out


def pattern(index):
    """What frame `index` looks like, as RGB (the video-range levels 16 and 235 as decoded)."""
    bars = np.array([255 if index >> k & 1 else 0 for k in range(BITS)], np.uint8)
    return np.repeat(np.repeat(bars, W // BITS)[None, :, None], H, 0).repeat(3, 2)


def timed_frames(path):
    meta = probe.probe(str(path))
    return list(read_frames(meta, (meta.width, meta.height), probe.Crop()))


def clicks(path):
    """The times (file clock) where the recording's sound clicks."""
    pcm = subprocess.run([ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-copyts",
                          "-i", str(path), "-map", "0:a:0", "-af", "aresample=async=1:first_pts=0", "-ac", "1",
                          "-ar", "48000", "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return click_onsets(np.frombuffer(pcm, np.int16)) / 48000


def click_onsets(samples):
    """The sample numbers (48 kHz, 16-bit) where a click starts: loud, after at least 0.1 s of tone."""
    loud = np.flatnonzero(np.abs(samples.astype(np.float32) / 32768) > 0.4)
    return loud[np.concatenate([[True], np.diff(loud) > 4800])]


def busy(count):
    """Processes that keep the CPU busy beside a run, as other work on the machine does."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def bounded(seconds):
    """A stop event that sets itself after `seconds`: a connection read in the test's own process
    ends then, and the test fails instead of waiting for ever."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


def test_a_stamp_line_broken_by_another_threads_is_put_back():
    # Lines as ffmpeg printed them when two threads' pieces met: picture 1's line went into sound
    # 1's, and sound 3's into picture 3's. Each lost stamp comes back, in its place.
    picture = "[Parsed_showinfo_1 @ 0x1] n:{n:4d} pts:{pts:7d} pts_time:{t} duration:   3600 duration_time:0.04 fmt:rgb24 "
    sound = ("[Parsed_ashowinfo_3 @ 0x2] n:{n} pts:{pts} pts_time:{t} fmt:s16 channels:2 chlayout:stereo rate:48000 "
             "nb_samples:1024 checksum:C53C2206 ")
    unprefixed = lambda line: line.split("] ", 1)[1]  # noqa: E731
    lines = ["[Parsed_showinfo_1 @ 0x1] config in time_base: 1/90000, frame_rate: 25/1",
             picture.format(n=0, pts=0, t=0) + "iskey:1 type:I",
             sound.format(n=0, pts=0, t=0) + "plane_checksums: [ C53C2206 ]",
             sound.format(n=1, pts=1024, t=0.021) + unprefixed(picture.format(n=1, pts=3600, t=0.04)),
             "[Parsed_ashowinfo_3 @ 0x2] plane_checksums: [ C53C2206 ]",
             sound.format(n=2, pts=2048, t=0.043),
             picture.format(n=2, pts=7200, t=0.08),
             picture.format(n=3, pts=10800, t=0.12) + unprefixed(sound.format(n=3, pts=3072, t=0.064)),
             sound.format(n=4, pts=4096, t=0.085),
             picture.format(n=4, pts=14400, t=0.16)]
    log = ffmpeg.Log(io.BytesIO("".join(line + "\n" for line in lines).encode()))
    log.join(5)
    pictures = list(iter(log.stamps.get, None))
    sounds = list(iter(log.sound_stamps.get, None))
    assert np.allclose([t for t, _ in pictures], [0, 0.04, 0.08, 0.12, 0.16]), pictures
    assert np.allclose([t for t, _ in sounds], np.arange(5) * 1024 / 48000) and {n for _, n in sounds} == {1024}


def test_every_live_frame_and_sound_block_keeps_its_own_time_at_full_speed(tmp_path):
    # A live input's times come from ffmpeg's log, a line per picture and per block of sound, which
    # ffmpeg prints in pieces from two threads: pieces of one line broke the other's, and a lost
    # line paired every later picture or block with its neighbour's time (a frame short at the end
    # of a rehearsal; the sound 21 ms late per lost line). Read as fast as ffmpeg can, so that the
    # lines come thick (some 30 a minute were lost): every picture and every click at its own time.
    clip = tmp_path / "numbered.ts"
    subprocess.run([ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", PATTERN,
                    "-f", "lavfi", "-i", SOUND, "-t", "40", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
                    "-crf", "10", "-c:a", "aac", str(clip)], check=True)
    blocks, stop = [], bounded(60)
    connection = Connection(["-i", str(clip)], (W, H), True, 0, lambda _, sound: blocks.append(sound), stop)
    try:
        frames = list(connection.frames(30, 30))
    finally:
        connection.close()
    assert not stop.is_set(), "the connection was still reading after 60 s"
    assert len(frames) == 40 * FPS
    numbers = indices([tile for tile, _, _, _ in frames])
    assert numbers == [n % 256 for n in range(len(frames))]
    offsets = np.array([seconds - n / FPS for n, (_, seconds, _, _) in enumerate(frames)])
    assert np.ptp(offsets) < 1e-3, offsets
    time.sleep(0.5)  # the sound's reader: to the pipe's end
    pcm = np.frombuffer(b"".join(b.data for b in blocks), np.int16).reshape(-1, SOUND_CHANNELS)[:, 0]
    starts = np.array([b.time for b in blocks])
    lengths = np.array([len(b.data) // SOUND_BYTES for b in blocks])
    assert np.abs(np.diff(starts) - lengths[:-1] / SOUND_RATE).max() < 1e-4  # back to back
    onsets = click_onsets(pcm)
    block_of = np.searchsorted(np.cumsum(lengths), onsets, side="right")
    heard = starts[block_of] + (onsets - np.concatenate([[0], np.cumsum(lengths)])[block_of]) / SOUND_RATE
    assert len(heard) >= 30
    lag = (heard - offsets.mean() + CLICK / 2) % CLICK - CLICK / 2  # 0: each click at its frame's time
    assert np.abs(lag).max() < 0.005, lag


def test_live_pictures_do_not_wait_for_sound_that_starts_late(tmp_path):
    # Pictures and sound are filtered apart: the pictures of an input whose sound starts later (or
    # never) come at once, not when the first sound does.
    clip = tmp_path / "late.ts"
    subprocess.run([ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"{PATTERN},trim=duration=4", "-itsoffset", "3", "-f", "lavfi", "-i", f"{SOUND},atrim=duration=1",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mpegts", str(clip)], check=True)
    blocks, began, stop = [], time.monotonic(), bounded(60)
    connection = Connection(["-re", "-i", str(clip)], (W, H), False, 0, lambda _, sound: blocks.append(sound), stop)
    try:
        frames = connection.frames(10, 10)
        next(frames)
        first_picture = time.monotonic() - began
        rest = list(frames)
    finally:
        connection.close()
    assert not stop.is_set(), "the connection was still reading after 60 s"
    assert first_picture < 1.5, first_picture
    assert len(rest) == 4 * FPS - 1
    assert blocks and abs(blocks[0].time - rest[0][1] - 3 + 1 / FPS) < 0.05  # the sound at its own time


def test_live_sound_lost_or_repeated_on_the_way_keeps_each_click_at_its_time(tmp_path):
    # Sound from a network input can lose blocks or repeat some; a player counts samples, so the
    # recording's sound must be back to back: a gap filled, an overlap cut, each block at its time.
    clock = type("Connection", (), {"offset": 0.0, "closed": False})()
    sound, block = LiveSound(), 1024
    t = np.arange(int(4 * SOUND_RATE)) / SOUND_RATE
    tone = 0.1 * np.sin(2 * np.pi * 440 * t) + 0.8 * (np.mod(t, 0.5) < 0.004)
    pcm = np.repeat((tone * 32767).astype(np.int16)[:, None], SOUND_CHANNELS, 1)
    for start in range(0, len(pcm) - block, block):
        if 40 <= start // block < 43:  # lost on the way
            continue
        if start // block == 100:  # a block sent again, half a block late
            sound.add(clock, Sound((start - block // 2) / SOUND_RATE, pcm[start - block // 2:start + block // 2].tobytes()))
        sound.add(clock, Sound(start / SOUND_RATE, pcm[start:start + block].tobytes()))
    out = tmp_path / "show.ts"
    sink = LiveSink(str(out), (W, H), (W, H), sound=sound)
    for n in range(int(3.8 * FPS)):
        sink.write(np.full((H, W, 3), 128, np.uint8), n / FPS, 1 / FPS)
    sink.close()
    first_picture = timed_frames(out)[0].time
    heard = clicks(out) - first_picture  # by counting samples, as a player does
    assert len(heard) == 8, heard
    assert np.abs(heard - 0.5 * np.arange(8)).max() < 0.003, heard


def test_udp_in_and_out_gives_back_the_input_frames_in_sync_and_sigterm_ends_it(evaluated, tmp_path):
    # The run joins a stream that has been going for a while, started on a busy machine (a busy
    # process beside it until the models are ready, and the suite's other worker): each frame
    # must keep its time and the sound its own, not a count of samples from the start. (This is
    # where the sound once came out 0.24 s early: with clicks every second, a recording that
    # starts in the frame numbers' second cycle was reckoned one cycle off.)
    port_in, port_out = free_port(), free_port()
    recording = tmp_path / "received.ts"
    player = receive(port_out, recording)
    camera = send(port_in, 80)
    time.sleep(11)  # past the first 256 frames
    load = busy(1)
    run = Live(f"udp://127.0.0.1:{port_in}", f"udp://127.0.0.1:{port_out}", "--models", evaluated["models"],
               "--detail", 1, "--alpha", 0, "--beta", 0, "--stats", tmp_path / "stats.json")
    try:
        run.wait_for("Ctrl-C ends it")
        for proc in load:  # the start was slow; what follows is measured on the machine as it is
            proc.kill()
        run.wait_for("live: in ")  # the status line: frames are going through
        time.sleep(6)
        run.proc.send_signal(signal.SIGTERM)  # as a service manager stops it
        status, stdout = run.finish()
        time.sleep(1)
    finally:
        for proc in (*load, camera, run.proc, player):  # a TS recording is whole up to its last packet
            proc.kill()
            proc.wait()
    assert status == 0, run.stderr
    assert "Traceback" not in run.stderr and "error:" not in run.stderr, run.stderr
    assert "interrupted" in stdout and "dropped" in stdout, stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_out"] >= 50 and stats["frames_out"] <= stats["frames_in"]
    assert 0 < stats["delay_mean"] <= stats["delay_p95"] < 3  # generous: bounded, not a speed figure

    frames = timed_frames(recording)
    assert len(frames) >= 50
    numbers = indices([f.image for f in frames])
    assert sum(n is not None for n in numbers) >= 0.95 * len(frames)
    for frame, number in zip(frames, numbers):  # the input's own pictures, at the input's size
        if number is not None:
            assert frame.image.shape == (H, W, 3)
            assert np.abs(frame.image.astype(int) - pattern(number)).mean() < 12
    # Each output frame keeps its input timestamp: time minus index/fps is one constant offset.
    known = [(f.time, n) for f, n in zip(frames, numbers) if n is not None]
    unwrapped, turns, previous = [], 0, None
    for t, n in known:
        if previous is not None and n < previous - 128:
            turns += 1
        previous = n
        unwrapped.append((t, n + 256 * turns))
    offsets = np.array([t - n / FPS for t, n in unwrapped])
    assert np.ptp(offsets) < 0.02, offsets
    # The sound: each click of the input at the frame of its time.
    heard = clicks(recording)
    assert len(heard) >= 4, heard
    lag = (heard - offsets.mean() + CLICK / 2) % CLICK - CLICK / 2  # 0 when a click is at the time of its frame
    assert np.abs(lag).max() < 0.04, (heard, offsets.mean())


def test_a_slow_model_drops_frames_and_a_recording_plays_after_sigint(evaluated, tmp_path):
    port = free_port()
    out = tmp_path / "show.mp4"
    camera = send(port, 60, sound=False)
    run = Live(f"udp://127.0.0.1:{port}", out, "--models", evaluated["models"], "--batch-size", 4, "--source", "clip",
               "--stats", tmp_path / "stats.json", slow=0.4)  # 10 frames/s at most
    try:
        run.wait_for("Ctrl-C ends it")
        run.wait_for("live: in ")
        time.sleep(6)
        assert out.exists() and out.stat().st_size > 0  # written under its final name as it goes
        run.proc.send_signal(signal.SIGINT)  # Ctrl-C
        status, stdout = run.finish()
    finally:
        camera.kill()
        run.proc.kill()
    assert status == 0, run.stderr
    assert "shift from clip" in run.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["dropped"] > 0.3 * stats["frames_in"], stats  # 25 come, at most 10 go through
    assert stats["delay_p95"] < 3, stats  # two batches and the encoder, not the whole backlog
    meta, frames = decode(out)
    assert (meta.width, meta.height) == (W, H) and len(frames) >= 10
    assert frames.std() > 5  # a picture, not a blank


def test_an_input_that_drops_out_is_reconnected_then_the_run_ends(evaluated, tmp_path):
    port = free_port()
    out = tmp_path / "show.ts"
    first = send(port, 60, sound=False)
    run = Live(f"udp://127.0.0.1:{port}", out, "--models", evaluated["models"], "--reconnect", 4)
    second = None
    try:
        run.wait_for("Ctrl-C ends it")
        time.sleep(2)
        first.kill()
        run.wait_for("dropped out")
        second = send(port, 4, sound=False)  # back within the limit
        run.wait_for("input back")
        second.wait(30)
        status, stdout = run.finish(timeout=60)  # gone again: after 4 s the run ends by itself
    finally:
        first.kill()
        if second:
            second.kill()
        run.proc.kill()
    assert status == 0, run.stderr
    assert "not back after 4 s" in run.stderr and "input ended" in stdout, run.stderr
    frames = timed_frames(out)
    times = [f.time for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))  # one clock across the gap
    gaps = np.diff(times)
    assert gaps.max() > 1, "the second connection's frames come after a gap"
    assert (np.array(times) > times[int(np.argmax(gaps))]).sum() >= 25  # a second or more from it


def test_an_input_that_cannot_be_opened_is_one_error_line(evaluated, tmp_path):
    began = time.monotonic()
    assert_error_before_tensorflow("mogrify_video.py", f"udp://127.0.0.1:{free_port()}", tmp_path / "out.ts",
                                   "--models", evaluated["models"], fragments=["cannot open it", "no picture"])
    assert time.monotonic() - began < 30
    assert_error_before_tensorflow("mogrify_video.py", "tcp://127.0.0.1:9", tmp_path / "out.ts",
                                   "--models", evaluated["models"], fragments=["cannot open it"])
    assert not (tmp_path / "out.ts").exists()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "mogrify_video.py"), "udp://127.0.0.1:5000",
                             tmp_path / "out.avi", "--models", evaluated["models"]], capture_output=True, text=True)
    assert_one_line_error(result, "out.avi", ".mp4")


def test_a_file_with_live_is_a_rehearsal_read_at_its_own_rate(evaluated, media, tmp_path):
    out = tmp_path / "rehearsal.ts"
    run = Live(media["clip"], out, "--models", evaluated["models"], "--live", "--stats", tmp_path / "stats.json")
    status, stdout = run.finish(timeout=120)
    assert status == 0, run.stderr
    assert "input ended" in stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    source, clip_frames = decode(media["clip"])
    meta, frames = decode(out)
    assert stats["frames_in"] == len(clip_frames)  # every frame of it came: the models were ready first
    assert len(frames) == stats["frames_out"] >= 0.8 * len(clip_frames)
    assert meta.has_audio and (meta.width, meta.height) == (source.width, source.height)


def nearest_errors(frames, candidates):
    """Each frame's mean squared error to the candidate it is closest to (a live run may drop frames)."""
    return [min(np.mean((f.astype(float) - c) ** 2) for c in candidates) for f in frames]


def test_a_spatial_model_renders_live_at_the_frame_size(spatial, media, tmp_path):
    """A spatial model live sees the shown picture itself (no tiles): with --detail 1 and alpha =
    beta = 0 every output frame is an input frame, at the input's size."""
    out = tmp_path / "spatial.ts"
    # --render-size, which live once refused, is taken (here the frame's own size: the same rule as a file's).
    run = Live(media["clip"], out, "--models", spatial["models"], "--live", "--detail", 1, "--alpha", 0,
               "--beta", 0, "--stats", tmp_path / "stats.json", "--render-size", "160x90")
    status, _ = run.finish(timeout=120)
    assert status == 0, run.stderr
    _, sent = decode(media["clip"])
    meta, frames = decode(out)
    # Some frames may be dropped, by design, when the suite's other workers keep the cores busy
    # (19, 24 and 31 of 40 were seen then, 40 alone); what matters here is that those written are
    # the input's, enough of them for a median.
    assert (meta.width, meta.height) == (160, 90) and len(frames) >= 0.25 * len(sent)
    errors = nearest_errors(frames, sent)
    assert 10 * np.log10(255 ** 2 / max(np.median(errors), 1e-9)) > 30


def test_a_spatial_model_renders_live_at_its_render_scale_as_a_file_does(spatial, media, tmp_path):
    """Live, a spatial model renders at the scale it learned (model.json's render_scale), as a
    file's render does, its detail from the shown picture, and the output keeps the input's size:
    each live frame is the file's render of some frame."""
    import shutil
    models = tmp_path / "models"
    shutil.copytree(spatial["models"], models)
    meta = json.loads((models / "model.json").read_text())
    (models / "model.json").write_text(json.dumps({**meta, "render_scale": 0.5}))
    shifted = ["--models", models, "--alpha", 0, "--beta", 1, "--detail", 0.5]  # alpha 0: no source mean
    run = Live(media["clip"], tmp_path / "live.ts", *shifted, "--live")
    status, _ = run.finish(timeout=120)
    assert status == 0, run.stderr
    assert "rendered at 80x44 (render scale 0.5, the scale it learned (model.json))" in run.stderr
    run_script("mogrify_video.py", media["clip"], tmp_path / "file.mp4", *shifted, "--crop", "none")
    (meta, live), (_, rendered), (_, sent) = decode(tmp_path / "live.ts"), decode(tmp_path / "file.mp4"), \
        decode(media["clip"])
    assert (meta.width, meta.height) == (160, 90) and len(live) >= 0.5 * len(rendered)
    # Each live frame is the file's render of some frame (x264 apart), and not the input.
    to_render, to_input = nearest_errors(live, rendered), nearest_errors(live, sent)
    assert 10 * np.log10(255 ** 2 / np.median(to_render)) > 35, np.median(to_render)
    assert np.median(to_input) > 4 * np.median(to_render)
