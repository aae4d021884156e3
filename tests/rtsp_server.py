"""The least of an RTSP server, for the tests: ffmpeg can read rtsp but not serve it to a reader."""
import socket
import threading


class RtspServer(threading.Thread):
    """The least of an RTSP server, as a camera or MediaMTX serves a stream: one MPEG-TS-over-RTP
    track (what an ffmpeg encoder sends with -f rtp_mpegts to `rtp_port`), described, set up over
    TCP (interleaved, as ffmpeg's prefer_tcp asks) and played to each client that calls."""
    SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=video 0 RTP/AVP 33\r\na=rtpmap:33 MP2T/90000\r\na=control:track0\r\n")

    def __init__(self, port, rtp_port):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", rtp_port))
        self.players = []  # clients that asked to play
        self.lock = threading.Lock()
        self.requests = []  # the methods called, in order
        self.start()
        threading.Thread(target=self._relay, daemon=True).start()

    def run(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _relay(self):
        while True:
            try:
                packet = self.rtp.recv(65536)
            except OSError:
                return
            frame = b"$\x00" + len(packet).to_bytes(2, "big") + packet
            with self.lock:
                for player in list(self.players):
                    try:
                        player.sendall(frame)
                    except OSError:
                        self.players.remove(player)

    def _serve(self, client):
        try:
            self._answer(client, client.makefile("rb"))
        except OSError:  # the client hung up
            pass
        finally:
            with self.lock:
                if client in self.players:
                    self.players.remove(client)
            client.close()

    def _answer(self, client, stream):
        while True:
            lines = []
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                lines.append(line.decode().strip())
            if not lines:
                continue
            self.requests.append(lines[0].split()[0])
            method, url = lines[0].split()[:2]
            headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
            headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
            if int(headers.get("content-length", 0)):
                stream.read(int(headers["content-length"]))
            reply = {"CSeq": headers.get("cseq", "0")}
            body = b""
            if method == "OPTIONS":
                reply["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
            elif method == "DESCRIBE":
                body = self.SDP.encode()
                reply.update({"Content-Base": url.rstrip("/") + "/", "Content-Type": "application/sdp"})
            elif method == "SETUP":
                if "TCP" not in headers.get("transport", ""):
                    client.sendall(f"RTSP/1.0 461 Unsupported Transport\r\nCSeq: {reply['CSeq']}\r\n\r\n".encode())
                    continue
                reply.update({"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "Session": "12345678"})
            elif method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
                reply["Session"] = "12345678"
            reply["Content-Length"] = str(len(body))
            head = "RTSP/1.0 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in reply.items()) + "\r\n"
            with self.lock:
                client.sendall(head.encode() + body)
                if method == "PLAY":
                    self.players.append(client)
                if method == "TEARDOWN" and client in self.players:
                    self.players.remove(client)

    def close(self):
        self.listener.close()
        self.rtp.close()
