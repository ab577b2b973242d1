"""Two llama-servers of the same model for test_real_continuation.py (A on 18095, B on 18096), started as the session's
own (scripts/llama-server.sh, the same arguments and chat template), each behind a tiny recording proxy (18097,
18098) that the catalogue's `local-continued` points at: the proxy forwards each request to its server, records the
request's JSON body and the bytes of the reply, and streams the reply back as it comes, chunk by chunk. A server that
dies mid-reply makes its proxy drop the client's connection before the reply's last chunk, as the server's own
connection would end; a client that goes away makes the proxy close the server's connection, as the client's own
would. The servers are stopped by their process ids."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from catalogue_e2e import LLAMA_ARGS, PAIR_LLAMA_PORTS, PAIR_PROXY_PORTS, TOOLS_TEMPLATE
from handoff_stack import ROOT, status, wait_until

HEALTH_TIMEOUT = 120
STOP_TIMEOUT = 10
UPSTREAM_TIMEOUT = 120  # seconds the proxy waits on a read from its server
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


@dataclasses.dataclass
class Forwarded:
    """One request a proxy forwarded, and what came of it."""

    body: dict | None
    started: float
    status: int | None = None
    reply: bytearray = dataclasses.field(default_factory=bytearray)
    # None while it runs; then "complete", "cut" (the server's reply ended early), "client gone" or "unreachable"
    outcome: str | None = None

    def chunks(self) -> list[dict]:
        """The reply's `data:` chunks, parsed (not [DONE])."""
        lines = bytes(self.reply).decode(errors="replace").splitlines()
        return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]

    def contents(self) -> list[str]:
        """The `content` of each of the reply's deltas that has some."""
        return [
            choice["delta"]["content"]
            for chunk in self.chunks()
            for choice in chunk.get("choices") or []
            if choice.get("delta", {}).get("content")
        ]


class RecordingProxy:
    """Listens on `port`, forwards to 127.0.0.1:`target`; `records` holds every request, oldest first."""

    def __init__(self, name: str, port: int, target: int):
        self.name, self.port, self.target = name, port, target
        self.records: list[Forwarded] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", port), type("Handler", (ProxyHandler,), {"proxy": self}))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"proxy-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def matching(self, marker: str) -> list[Forwarded]:
        """The requests whose body contains `marker`, oldest first."""
        return [r for r in list(self.records) if marker in json.dumps(r.body)]


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked replies
    proxy: RecordingProxy

    def log_message(self, format, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's signature)
        pass

    def do_GET(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = Forwarded(json.loads(body) if body else None, time.monotonic())
        self.proxy.records.append(record)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.proxy.target, timeout=UPSTREAM_TIMEOUT)
        try:
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
            except OSError:  # as if the server were not there: the connection closes without a reply
                record.outcome = "unreachable"
                self.close_connection = True
                return
            record.status = response.status
            self.send_response_only(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                try:
                    piece = response.read1(65536)
                except (http.client.HTTPException, OSError):  # the server died mid-reply: so does this reply
                    record.outcome = "cut"
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                except OSError:  # the client went away: the server's connection closes below
                    record.outcome = "client gone"
                    self.close_connection = True
                    return
                if not piece:  # that was the last chunk
                    record.outcome = "complete"
                    return
                record.reply += piece
        finally:
            upstream.close()


class LlamaPair:
    """The two servers (by name, A and B) and their proxies."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.proxies: dict[str, RecordingProxy] = {}

    def start(self) -> None:
        template = self.log_dir / "llama-pair-template.jinja"
        template.write_text(TOOLS_TEMPLATE)
        for name, port in PAIR_LLAMA_PORTS.items():
            with open(self.log_dir / f"llama-pair-{name}.log", "ab") as log:
                # The script execs llama-server (its binary is built: the session's llama-server is up), so the
                # process id is the server's.
                self.processes[name] = subprocess.Popen(
                    [str(ROOT / "scripts" / "llama-server.sh"), "run", str(port)],
                    env={**os.environ, "HANDOFF_LLAMA_ARGS": LLAMA_ARGS.format(template=template)},
                    cwd=self.log_dir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        for name, port in PAIR_PROXY_PORTS.items():
            self.proxies[name] = RecordingProxy(name, port, PAIR_LLAMA_PORTS[name])
            self.proxies[name].start()
        deadline = time.monotonic() + HEALTH_TIMEOUT
        for name, port in PAIR_LLAMA_PORTS.items():
            wait_until(f"llama-pair-{name}", self, deadline, lambda port=port: status(port, "/health") == 200)
            # Through the proxy too
            wait_until(
                f"proxy {name}", self, deadline, lambda name=name: status(PAIR_PROXY_PORTS[name], "/health") == 200
            )

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"llama-servers exited early (name: exit status): {dead}; logs in {self.log_dir}")

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def kill(self, name: str) -> None:
        """SIGKILL to server `name`, by its process id."""
        os.kill(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=5)

    def stop(self) -> None:
        """SIGTERM to each server still running, by its process id, SIGKILL after STOP_TIMEOUT s; the proxies stop."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for proxy in self.proxies.values():
            proxy.stop()
