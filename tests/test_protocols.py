"""Every live protocol the README names, run on loopback as a user would: ffmpeg is the camera or
encoder on one side and the server or player on the other, mogrify_video.py in between with
--detail 1 and alpha = beta = 0 (so each output frame is its input frame), and what came out is
decoded and read back by the numbered bars of test_live."""
import fcntl
import glob
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import assert_error_before_tensorflow
from rtsp_server import RtspServer
from test_live import FPS, H, PATTERN, SOUND, W, Live, free_port, indices, pattern, send, timed_frames
from vae import ffmpeg, probe, sources

FFMPEG = [ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
RUN_SECONDS = 5  # of frames going through, after the models are ready


def tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, kind):
    """Until a socket listens on the port (Linux's /proc/net tables): the run says it waits for a
    caller as it starts its ffmpeg, which binds the port a moment later, and a call before that is
    refused (a probe connection instead would be taken as the caller)."""
    for _ in range(100):
        for table in (f"/proc/net/{kind}", f"/proc/net/{kind}6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and (kind == "udp" or fields[3] == "0A"):
                        return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {kind} port {port}")


def camera(url, fmt="mpegts", sound=True, options=(), seconds=60):
    """An ffmpeg encoder sending the numbered frames (and test_live's clicks) in real time, a
    keyframe a second, as a camera or OBS would; `options` for its output (-listen 1: serve them)."""
    graph = f"{PATTERN}[out0]" + (f";{SOUND}[out1]" if sound else "")
    return subprocess.Popen([*FFMPEG, "-re", "-f", "lavfi", "-i", graph, "-t", str(seconds), "-c:v", "libx264",
                             "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS), "-crf", "10",
                             *(["-c:a", "aac"] if sound else []), *options, "-f", fmt, url])


def recorder(url, path, fmt="mpegts", listen=False):
    """An ffmpeg player (or rtmp server) writing what arrives, as it is."""
    return subprocess.Popen([*FFMPEG, "-y", *(["-listen", "1"] if listen else []), "-i", url, "-c", "copy",
                             "-f", fmt, str(path)])


def styled_run(source, target, *extra):
    # --detail 1 with alpha = beta = 0: every output frame is its input frame (the contract's formula).
    return Live(source, target, "--models", *extra, "--detail", 1, "--alpha", 0, "--beta", 0)


def end(run, *helpers):
    """SIGTERM the run once frames have gone through for a while; then let the helpers finish
    what they write (a player ends when the run hangs up), killing what does not."""
    try:
        run.wait_for("Ctrl-C ends it")
        time.sleep(RUN_SECONDS)
        assert run.proc.poll() is None, run.stderr
        run.proc.send_signal(signal.SIGTERM)
        status, stdout = run.finish()
        for proc in helpers:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for proc in (run.proc, *helpers):
            proc.kill()
            proc.wait()
    assert status == 0, run.stderr
    assert "Traceback" not in run.stderr and "error:" not in run.stderr, run.stderr
    assert "interrupted" in stdout, stdout
    return stdout


def assert_input_pictures(path, run, at_least=2 * FPS, repeats=False):
    """The recording holds the input's own pictures, at its size, in the order sent: a frame may be
    dropped (a busy CPU), never sent back in time, nor repeated (unless `repeats`: a camera reader
    may see a frame twice). What the run said is shown when too few came."""
    frames = timed_frames(path)
    assert len(frames) >= at_least, (len(frames), run.stderr)
    numbers = indices([f.image for f in frames])
    known = [n for n in numbers if n is not None]
    assert len(known) >= 0.95 * len(frames), numbers
    for frame, number in zip(frames, numbers):
        if number is not None:
            assert frame.image.shape == (H, W, 3)
            assert np.abs(frame.image.astype(int) - pattern(number)).mean() < 12
    steps = np.diff(known) % 256  # the bars count to 255, then from 0 again
    assert ((steps >= (0 if repeats else 1)) & (steps < 64)).all(), known
    assert np.median(steps) == 1, known
    return frames


@pytest.mark.slow
def test_srt_listener_waits_for_its_caller(evaluated, tmp_path):
    """What a performer does: start the run, then the encoder, later than the 8 s a picture is
    waited for once a connection is there."""
    port = free_port()
    out = tmp_path / "show.ts"
    run = styled_run(f"srt://127.0.0.1:{port}?mode=listener", out, evaluated["models"])
    sender = None
    try:
        run.wait_for("waiting for a caller")
        wait_listening(port, "udp")  # srt runs over udp
        time.sleep(sources.OPEN_SECONDS + 1)
        assert run.proc.poll() is None, run.stderr
        sender = camera(f"srt://127.0.0.1:{port}")
        end(run, sender)
    finally:
        for proc in (run.proc, sender):
            if proc:
                proc.kill()
    assert_input_pictures(out, run)
    assert probe.probe(str(out)).has_audio


@pytest.mark.slow
def test_srt_caller_in_and_tcp_out(evaluated, tmp_path):
    """The run calls an srt server (an encoder in listener mode) and sends to a tcp player that listens."""
    port_in, port_out = free_port(), tcp_port()
    received = tmp_path / "received.ts"
    server = camera(f"srt://127.0.0.1:{port_in}?mode=listener")
    player = recorder(f"tcp://127.0.0.1:{port_out}?listen=1", received)
    time.sleep(0.5)  # both listening
    run = styled_run(f"srt://127.0.0.1:{port_in}", f"tcp://127.0.0.1:{port_out}", evaluated["models"])
    end(run, server, player)
    assert_input_pictures(received, run)
    assert probe.probe(str(received)).has_audio


@pytest.mark.slow
def test_tcp_listener_in_and_srt_out(evaluated, tmp_path):
    """The run listens on tcp (the encoder calls it) and calls an srt player that listens. A first
    caller without sound is hung up on (ffmpeg cannot take the picture alone on the same
    connection), told so, and the run listens again for the picture alone: the next call goes through."""
    port_in, port_out = tcp_port(), free_port()
    received = tmp_path / "received.ts"
    player = recorder(f"srt://127.0.0.1:{port_out}?mode=listener", received)
    run = styled_run(f"tcp://127.0.0.1:{port_in}?listen=1", f"srt://127.0.0.1:{port_out}", evaluated["models"])
    mute = sender = None
    try:
        run.wait_for("waiting for a caller")
        wait_listening(port_in, "tcp")
        mute = camera(f"tcp://127.0.0.1:{port_in}", sound=False)
        run.wait_for("caller sends no sound")
        mute.wait(10)  # hung up on
        wait_listening(port_in, "tcp")  # listening again
        sender = camera(f"tcp://127.0.0.1:{port_in}")  # calls again, as an encoder that reconnects does
        end(run, player, sender)
    finally:
        for proc in (run.proc, player, mute, sender):
            if proc:
                proc.kill()
    assert_input_pictures(received, run)
    assert not probe.probe(str(received)).has_audio  # listening for the picture alone, as it said


@pytest.mark.slow
def test_rtmp_in_from_a_server_and_rtmp_out_to_a_server(evaluated, tmp_path):
    """rtmp both ways, with ffmpeg's one-stream rtmp server on each side: one serves the encoder's
    stream to the run, the other takes the run's stream (as a streaming service does) into a file."""
    port_in, port_out = tcp_port(), tcp_port()
    received = tmp_path / "received.flv"
    source = camera(f"rtmp://127.0.0.1:{port_in}/live/in", fmt="flv", options=["-listen", "1"])
    service = recorder(f"rtmp://127.0.0.1:{port_out}/live/out", received, fmt="flv", listen=True)
    time.sleep(0.5)  # both listening
    run = styled_run(f"rtmp://127.0.0.1:{port_in}/live/in", f"rtmp://127.0.0.1:{port_out}/live/out",
                     evaluated["models"])
    end(run, source, service)
    assert_input_pictures(received, run)
    assert probe.probe(str(received)).has_audio


@pytest.mark.slow
def test_hls_in_over_http(evaluated, tmp_path):
    """A live HLS playlist (an encoder writing a segment a second, as a camera or a relay does),
    served over http on loopback; the run follows it into a growing .mp4."""
    folder, out = tmp_path / "hls", tmp_path / "show.mp4"
    folder.mkdir()
    port = tcp_port()
    # Segments and playlist are written aside and renamed, so the server never hands out half a file.
    encoder = camera(str(folder / "index.m3u8"), fmt="hls", options=[
        "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments+temp_file"])
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                               str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # the first segments written and the server up
            time.sleep(0.1)
            if (folder / "index.m3u8").exists() and server.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    pass
        run = styled_run(f"http://127.0.0.1:{port}/index.m3u8", out, evaluated["models"])
        end(run)
    finally:
        for proc in (encoder, server):
            proc.kill()
            proc.wait()
    assert_input_pictures(out, run)
    assert probe.probe(str(out)).has_audio


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["tcp", "rtp"])
def test_calling_a_tcp_server_or_taking_rtp(evaluated, tmp_path, scheme):
    """tcp in with the encoder as the server (ffmpeg's listen=1 serves one connection), and MPEG-TS
    over RTP, into a growing .ts."""
    port = tcp_port() if scheme == "tcp" else free_port()
    out = tmp_path / "show.ts"
    if scheme == "tcp":
        sender = camera(f"tcp://127.0.0.1:{port}?listen=1")
        time.sleep(0.5)  # listening
    else:
        sender = camera(f"rtp://127.0.0.1:{port}", fmt="rtp_mpegts")
    run = styled_run(f"{scheme}://127.0.0.1:{port}", out, evaluated["models"])
    end(run, sender)
    assert_input_pictures(out, run)
    assert probe.probe(str(out)).has_audio


@pytest.mark.slow
def test_rtsp_in_from_a_server(evaluated, tmp_path):
    """rtsp read from a server, as from an IP camera or MediaMTX: a minimal server in the test
    relays the encoder's MPEG-TS over RTP to the run, interleaved on the RTSP connection (TCP)."""
    port, rtp_port = tcp_port(), free_port()
    server = RtspServer(port, rtp_port)
    sender = camera(f"rtp://127.0.0.1:{rtp_port}", fmt="rtp_mpegts")
    out = tmp_path / "show.ts"
    try:
        run = styled_run(f"rtsp://127.0.0.1:{port}/live", out, evaluated["models"])
        end(run, sender)
    finally:
        server.close()
    assert server.requests[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"], server.requests
    assert_input_pictures(out, run)
    assert probe.probe(str(out)).has_audio


def loopback_device():
    """A v4l2loopback virtual camera (/dev/videoN whose driver says 'v4l2 loopback'), or None."""
    for path in sorted(glob.glob("/dev/video*")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            capability = bytearray(104)  # struct v4l2_capability; its first 16 bytes name the driver
            fcntl.ioctl(fd, 0x80685600, capability)  # VIDIOC_QUERYCAP
        except OSError:
            continue
        finally:
            os.close(fd)
        if capability[:16].rstrip(b"\0") == b"v4l2 loopback":
            return path
    return None


def test_a_video_device_output_that_is_not_there_is_one_error_line(evaluated, tmp_path):
    missing = next(f"/dev/video{n}" for n in range(64, 256) if not os.path.exists(f"/dev/video{n}"))
    assert_error_before_tensorflow("mogrify_video.py", f"udp://127.0.0.1:{free_port()}", missing,
                                   "--models", evaluated["models"], fragments=[missing, "no such video device"])


@pytest.mark.slow
def test_v4l2_out_is_a_virtual_camera_that_a_reader_sees(evaluated, tmp_path):
    """The styled picture on a v4l2loopback device, read back as a video call or OBS would."""
    device = loopback_device()
    if device is None:
        pytest.skip("no v4l2loopback device here (a /dev/videoN whose driver is 'v4l2 loopback'; "
                    "sudo modprobe v4l2loopback makes one)")
    port = free_port()
    received = tmp_path / "received.ts"
    sender = send(port, 60, sound=False)
    run = styled_run(f"udp://127.0.0.1:{port}", device, evaluated["models"])
    viewer = None
    try:
        run.wait_for("Ctrl-C ends it")
        time.sleep(1)  # the run's first frames have set the device's format
        viewer = subprocess.Popen([*FFMPEG, "-y", "-f", "v4l2", "-i", device, "-t", "3", "-c:v", "libx264",
                                   "-preset", "ultrafast", "-crf", "10", "-f", "mpegts", str(received)])
        end(run, viewer)
    finally:
        for proc in (sender, run.proc, viewer):
            if proc:
                proc.kill()
    assert_input_pictures(received, run, at_least=FPS, repeats=True)


def test_ctrl_c_while_a_listener_waits_ends_its_ffmpeg(evaluated, tmp_path):
    """Nothing is left listening on the port (the ffmpeg that waits runs in a session of its own,
    which Ctrl-C in the terminal does not reach)."""
    port = free_port()
    run = Live(f"srt://127.0.0.1:{port}?mode=listener", tmp_path / "show.ts", "--models", evaluated["models"])
    try:
        run.wait_for("waiting for a caller")
        time.sleep(0.5)
        run.proc.send_signal(signal.SIGINT)
        run.finish(timeout=60)  # the interrupt may wait for TensorFlow's import, slow on a busy machine
    finally:
        run.proc.kill()
    assert "Traceback" not in run.stderr, run.stderr
    time.sleep(0.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # fails (address in use) while an ffmpeg still listens there
