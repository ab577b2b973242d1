"""A stand-in for the OpenAI-compatible servers Handoff's worker streams from: it replays the stream shapes of OpenAI,
vLLM, Ollama's /v1 and llama.cpp's llama-server, and their failures, chosen by the `model` of the request.

    python Tests/e2e/upstream_stub.py --port 18090 [--name A] [--seed N] [--max-seconds S]

Listens on 127.0.0.1 only. Stdlib only. Every response body is sent with `Transfer-Encoding: chunked`, cut at random
byte boundaries (and always inside each multi-byte UTF-8 character and between each `\\r` and `\\n`), one HTTP chunk
per piece with a short pause, so a client sees each piece as a separate read.

Models (the `model` field of the request):
  openai, vllm, ollama, llamacpp   a normal stream in that server's shape (tools -> tool_calls, logprobs -> logprobs)
  reasoning                        vLLM shape, `reasoning_content` deltas first, then content
  slow-first                       openai shape, first chunk 1.5 s after the headers
  slow                             openai shape, one content chunk every 50 ms, up to 2,000, until the client leaves
  stall                            openai shape, 2 content chunks, then 60 s of silence
  midstream-error-llamacpp         3 content chunks, `data: {"error":...}`, end (no [DONE], no usage)
  midstream-error-vllm             3 content chunks, `data: {"error":...}`, `data: [DONE]`
  truncated-ollama                 3 content chunks, then a clean end of the body: no finish chunk, no [DONE]
  drop                             3 content chunks, then the TCP connection is closed (FIN) without the last chunk
  drop-reset                       the same, closed with a RST
  fail-503                         503, an Envoy-style plain-text body naming an internal address
  fail-502                         502, nginx's HTML page naming an internal address
  fail-500-json                    500, llama.cpp-style JSON error whose message names an internal URL
  fail-429                         429, `Retry-After: 1`, OpenAI's rate-limit JSON
  fail-401                         401, OpenAI's invalid-key JSON, echoing the key it was sent
  fail-404                         404, OpenAI's model_not_found JSON
  context-400                      400, llama.cpp's exceed_context_size_error (n_ctx 2048)
  vllm-context-400                 400, vLLM's nested context-length error (the limit, 2048, in the message only)
  openai-context-400               400, OpenAI's context_length_exceeded error
  old-vllm-400                     400, older vLLM's flat `{"object":"error",...}` (not a context error)
  long-line                        openai shape, 2 content chunks, then one `data:` line of 4 MiB that never ends
  flood                            openai shape, content chunks of 1 KiB until 4 MiB were sent (or the client leaves)
  continued, continued-vllm        3 content chunks, half an event, dropped; an answer continued from a trailing
                                   assistant message streams the rest (stub_continuation.py)
  continued-tools                  a tool call's deltas, dropped
Anything else: 404 model_not_found, as the real servers answer.

Recording: `GET /_stub/requests` answers every request seen as a JSON list of {"stub", "path", "model", "body",
"authorization", "headers", "started", "ended", "outcome", "status", "content_chunks"} (and, for the continuation
models, "usage" and "cut_at"); outcome is null while the response runs, then one of complete, client_disconnected,
dropped, error (an error event ended the stream), truncated, rejected (an HTTP error status), bad_request, stopped
(the stub is shutting down).
`DELETE /_stub/requests` forgets them. `GET /health` answers 200.

What tests should expect of each normal stream is computed by `expected(model, body)` in stub_shapes.py.
This module is the entry point; its parts are stub_shapes.py (the stream shapes), stub_wire.py (the chunked writes),
stub_failures.py (the error answers), stub_continuation.py (answers cut and continued), stub_scenarios.py (what each
model answers) and stub_server.py (the HTTP server and the recording), beside it, so a run of it by path finds them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from stub_server import Handler, Recorder, Server
from stub_wire import STOP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="stub")
    parser.add_argument("--seed", type=int, default=None, help="makes the random cuts repeatable")
    parser.add_argument(
        "--max-seconds", type=float, default=3 * 3600, help="exit on its own after this long (default: 3 hours)"
    )
    args = parser.parse_args(argv)

    server = Server(("127.0.0.1", args.port), Handler)
    server.recorder = Recorder(args.name)
    server.seed = args.seed
    parent = os.getppid()

    def stop(signum, frame) -> None:
        STOP.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serving.start()
    print(f"stub {args.name} listening on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.max_seconds
    while not STOP.wait(0.25):
        if time.monotonic() > deadline:
            print(f"stub {args.name}: --max-seconds reached", file=sys.stderr, flush=True)
            break
        if os.getppid() != parent:  # whoever started us is gone
            print(f"stub {args.name}: parent exited", file=sys.stderr, flush=True)
            break
    STOP.set()
    server.shutdown()
    server.server_close()
    print(f"stub {args.name} stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
