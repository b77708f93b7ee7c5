"""``spml serve``: an exported model, or a checkpoint exported on the fly, behind HTTP.

    spml serve --model model.onnx --port 8000
    spml serve --config configs/demo.yaml --ckpt_path best --port 8000

With ``--model`` the file is served as it is. Otherwise every argument this
command does not know is given to ``spml export`` (``--config``,
``--ckpt_path``, ``--threshold``, overrides), which writes the model into a
temporary folder that lives as long as the server. POST an image's bytes to
``http://HOST:PORT/predict`` (``spml_lightning.deploy.server``).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from spml_lightning.console import RunProgress, UsageError, run_command

__all__ = ["command", "main"]

#: ``spml export`` with these arguments: its exit status (given by the CLI, which imports this).
Export = Callable[[list[str]], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spml serve",
        description="Serve an exported model (--model) or a checkpoint (spml export's arguments) "
        "over HTTP: POST an image's bytes to /predict, get its labels and scores as JSON.",
    )
    parser.add_argument("--model", default=None, help="an ONNX file written by spml export")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to answer other machines")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_batch_size", type=int, default=8, help="requests run together")
    parser.add_argument(
        "--batch_timeout", type=float, default=0.005, help="seconds a batch waits to fill"
    )
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes")
    parser.add_argument(
        "--threads", type=int, default=None, help="onnxruntime threads per worker (all cores)"
    )
    parser.add_argument(
        "--max_body_bytes", type=int, default=32 * 1024 * 1024, help="larger bodies get 413"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait")
    return parser


def main(
    argv: Sequence[str] | None, progress: RunProgress | None = None, *, export: Export
) -> None:
    """Serve until interrupted.

    Args:
        argv: the command line without ``spml serve``.
        progress: marked started when the server starts.
        export: runs ``spml export`` (serving a checkpoint).
    """
    args, export_args = _parser().parse_known_args(argv)
    if args.model is not None and export_args:
        raise UsageError(
            f"--model serves a file as it is; {' '.join(export_args)} would be for spml export "
            "(serving a checkpoint): give one or the other."
        )
    if args.model is None and "--ckpt_path" not in " ".join(export_args):
        raise UsageError(
            "nothing to serve: pass --model model.onnx (from spml export), or --config ... "
            "--ckpt_path best to export a checkpoint and serve it."
        )
    try:
        from spml_lightning.deploy.server import label_server
    except ImportError as err:
        raise UsageError(
            f'spml serve needs LitServe ({err}): pip install "spml_lightning[serve]".'
        ) from err
    if args.batch_timeout < 0 or args.max_batch_size < 1 or args.workers < 1:
        raise UsageError("--max_batch_size and --workers are >= 1, --batch_timeout >= 0.")
    with tempfile.TemporaryDirectory(prefix="spml-serve-") as scratch:
        model = args.model
        if model is None:
            model = str(Path(scratch) / "model.onnx")
            status = export([*export_args, "--output", model])
            if status != 0:
                raise SystemExit(status)
        server = label_server(
            model,
            max_batch_size=args.max_batch_size,
            batch_timeout=args.batch_timeout,
            workers=args.workers,
            threads=args.threads,
            max_body_bytes=args.max_body_bytes,
            timeout=args.timeout,
        )
        if progress is not None:
            progress.started = True
        print(f"Serving {model} at http://{args.host}:{args.port}/predict", flush=True)
        server.run(host=args.host, port=args.port, generate_client_file=False)


def command(argv: Sequence[str] | None, export: Export) -> int:
    """``spml serve`` with exit statuses (``spml_lightning.console``): 2 for bad arguments.

    Args:
        argv: the command line without ``spml serve``.
        export: runs ``spml export`` with the given arguments, returning its exit status.
    """
    return run_command("spml serve", functools.partial(main, export=export), argv)
