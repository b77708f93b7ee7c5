"""`spml serve` under load: requests per second and latency for 1, 4 and 16 concurrent clients.

Starts ``spml serve --model MODEL`` on a free loopback port (or uses ``--url``),
sends ``--requests`` POSTs of one image at each concurrency level (each client
sends its next request when its answer arrives), and prints per level:
requests/s, the p50 and p99 latency of a request in ms, and the mean number of
images each request's batch ran together (its answer's ``X-Batch-Size``). Only the loopback
interface is used; the counts are bounded.

    python bench/serve.py --model model.onnx [--image photo.jpg] [--requests 400]
        [--concurrency 1 4 16] [--max_batch_size 8] [--batch_timeout 0.005] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

import numpy as np
from harness import cpu_name, print_check, print_load, write_synthetic_jpeg

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def exchange(
    url: str, body: bytes, content_type: str | None, timeout: float = 60
) -> tuple[int, dict, Message]:
    """POST ``body`` to ``url``: the status, the JSON answer and its headers (any case)."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def post(url: str, body: bytes, content_type: str | None, timeout: float = 60) -> tuple[int, dict]:
    """POST ``body`` to ``url``: the status and the JSON answer."""
    return exchange(url, body, content_type, timeout)[:2]


@contextlib.contextmanager
def serving(args: list[str], startup: float = 240) -> Iterator[str]:
    """Run ``spml serve ARGS`` on a free loopback port; yield its /predict URL; stop it after."""
    port = free_port()
    command = [sys.executable, "-m", "spml_lightning", "serve", *args, "--port", str(port)]
    # The server's output goes to a file: a pipe nobody reads fills with its access log
    # (a line per request) and then blocks the server mid-answer.
    log = tempfile.TemporaryFile("w+")
    # Its own session: the server and its worker processes stop together, by its group id.
    server = subprocess.Popen(
        command,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + startup
        while not _healthy(port):
            if server.poll() is not None:
                log.seek(0)
                output = log.read()
                raise RuntimeError(f"spml serve exited {server.returncode}:\n{output[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"spml serve did not answer /health within {startup} s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def load(url: str, body: bytes, content_type: str, requests: int, clients: int) -> dict[str, float]:
    """``requests`` POSTs by ``clients`` concurrent clients: requests/s, p50 and p99 in ms, and
    the mean size of the batch each request ran in (the answers' ``X-Batch-Size``)."""

    def one(_: int) -> tuple[float, int]:
        start = time.perf_counter()
        status, answer, headers = exchange(url, body, content_type)
        if status != 200:
            raise RuntimeError(f"the server answered {status}: {answer}")
        return time.perf_counter() - start, int(headers.get("X-Batch-Size", 1))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = np.array(list(pool.map(one, range(requests))))
    latencies, batches = runs[:, 0], runs[:, 1]
    seconds = time.perf_counter() - start
    return {
        "requests/s": requests / seconds,
        "p50 ms": float(np.percentile(latencies, 50) * 1000),
        "p99 ms": float(np.percentile(latencies, 99) * 1000),
        "mean batch size": float(batches.mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the ONNX file to serve (spml export)")
    parser.add_argument("--url", help="a running server's /predict URL instead of --model")
    parser.add_argument("--image", type=Path, help="the image to send (default: a 640x480 JPEG)")
    parser.add_argument("--requests", type=int, default=400, help="requests per level")
    parser.add_argument("--warmup", type=int, default=8, help="requests before the levels")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max_batch_size", type=int, default=8)
    parser.add_argument("--batch_timeout", type=float, default=0.005)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if (args.model is None) == (args.url is None):
        parser.error("give --model (a file to serve) or --url (a running server), not both.")
    print(f"# machine: {cpu_name()}")
    print_load("start")
    with tempfile.TemporaryDirectory() as scratch:
        image = args.image
        if image is None:
            image = Path(scratch) / "photo.jpg"
            write_synthetic_jpeg(image, 640, 480, seed=0)
        body = image.read_bytes()
        content_type = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
        server_args = ["--model", str(args.model), "--max_batch_size", str(args.max_batch_size)]
        server_args += ["--batch_timeout", str(args.batch_timeout), "--workers", str(args.workers)]
        if args.threads is not None:
            server_args += ["--threads", str(args.threads)]
        with contextlib.nullcontext(args.url) if args.url else serving(server_args) as url:
            print(
                f"# server: {url}, max_batch_size {args.max_batch_size}, {args.workers} worker(s)"
            )
            load(url, body, content_type, args.warmup, 1)
            for clients in args.concurrency:
                result = load(url, body, content_type, args.requests, clients)
                for name, value in result.items():
                    print_check(f"{clients} client(s), {args.requests} requests: {name}", value)
    print_load("end")


if __name__ == "__main__":
    main()
