"""An exported model behind HTTP, on LitServe: POST an image, get its labels and scores as JSON.

    curl --data-binary @photo.jpg -H "Content-Type: image/jpeg" http://127.0.0.1:8000/predict
    {"labels": ["dog", "person"], "scores": {"cat": 0.03, "dog": 0.91, ...}}

The body is the image file's bytes, with an ``image/*`` (or
``application/octet-stream``) content type. LitServe's inference workers batch
concurrent requests (``max_batch_size``, ``batch_timeout``) and run the
torch-free :class:`~spml_lightning.deploy.Predictor`. A request that cannot be
answered gets a 4xx status and ``{"detail": "<why, and what to send>"}``: an
empty body (400), another content type (415), bytes that are not a readable
image or an image past the decompression-bomb limit (400), a body over
``max_body_bytes`` (413). A bad request never fails the others of its batch.
An answer's ``X-Batch-Size`` header says how many images the model ran together
with it (1 when it ran alone): what ``max_batch_size`` and ``batch_timeout`` did.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import litserve
import numpy as np
from starlette.responses import JSONResponse

from spml_lightning.deploy.images import UnreadableImage, model_input, read_image
from spml_lightning.deploy.predictor import Predictor

__all__ = ["API_PATH", "BATCH_SIZE_HEADER", "ImageBody", "LabelAPI", "label_server"]

#: Where images are POSTed.
API_PATH = "/predict"

#: The header of an answer that says how many images the model ran together with it.
BATCH_SIZE_HEADER = "X-Batch-Size"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ImageBody:
    """ASGI middleware: an image body becomes the JSON LitServe passes to its workers.

    LitServe parses every request body as JSON (or a form) before its workers see
    it. Here an ``image/*`` or ``application/octet-stream`` body on ``path`` is
    re-sent as ``{"image": "<base64>"}``; an empty body and any other content type
    are answered at once with a 4xx and a message.

    Args:
        app: the ASGI application (LitServe's).
        path: the API path whose bodies are images.
        max_bytes: a longer body is refused (413) before it is read whole.
    """

    def __init__(
        self, app: Callable[..., Awaitable[None]], path: str = API_PATH, max_bytes: int = 2**25
    ) -> None:
        self.app = app
        self.path = path
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a bad image request at once; pass a good one on as JSON, anything else as is."""
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
        if not (content_type.startswith("image/") or content_type == "application/octet-stream"):
            detail = (
                f"Content-Type {content_type or '(none)'} is not an image: POST the image file's "
                "bytes with Content-Type image/jpeg, image/png, ... or application/octet-stream."
            )
            await JSONResponse({"detail": detail}, status_code=415)(scope, receive, send)
            return
        body = await _read_body(receive, self.max_bytes)
        if body is None:
            detail = f"body over {self.max_bytes} bytes: send a smaller image."
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        if not body:
            detail = "empty body: POST the bytes of an image file (JPEG, PNG, ...)."
            await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
            return
        payload = json.dumps({"image": base64.b64encode(body).decode("ascii")}).encode()
        rewritten = {
            k: v for k, v in headers.items() if k not in (b"content-type", b"content-length")
        }
        rewritten[b"content-type"] = b"application/json"
        rewritten[b"content-length"] = str(len(payload)).encode()
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # what follows the body: a disconnect
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        await self.app({**scope, "headers": list(rewritten.items())}, replay, send)


async def _read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The request's body, or None once it is longer than ``max_bytes``."""
    chunks, length = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        length += len(chunk)
        if length > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class LabelAPI(litserve.LitAPI):
    """The LitServe API of an exported model: an image in, ``{"labels", "scores"}`` out.

    Args:
        model: the ONNX file written by ``spml export``.
        threads: onnxruntime threads per inference worker (None: onnxruntime's default).
        **kwargs: LitAPI's, e.g. ``max_batch_size`` and ``batch_timeout``.
    """

    def __init__(self, model: str, threads: int | None = None, **kwargs: Any) -> None:
        super().__init__(api_path=API_PATH, **kwargs)
        self.model = model
        self.threads = threads

    def setup(self, device: str) -> None:
        """Load the model in the inference worker."""
        self.predictor = Predictor(self.model, threads=self.threads)

    # No annotation on `request`: LitServe takes its type from it, and a (string) annotation
    # would make FastAPI read the request from the query string instead of the JSON body.
    def decode_request(self, request) -> np.ndarray | str:
        """The (3, S, S) input of the request's image, or why it is not an image (a str)."""
        try:
            data = base64.b64decode(request["image"], validate=True)
            image = read_image(data)
        except (UnreadableImage, ValueError, TypeError, KeyError) as err:
            return str(err)
        return model_input([image], self.predictor.metadata.preprocessing)[0]

    def batch(self, inputs: list[np.ndarray | str]) -> list[np.ndarray | str]:
        """The requests as they are: :meth:`predict` runs the readable ones together."""
        return inputs

    def predict(self, x: Any) -> Any:
        """One run of the model over the readable images; the others keep their reason.

        Batched (``max_batch_size`` > 1): a list in, a list out; else one item.
        """
        inputs = x if self.max_batch_size > 1 else [x]
        readable = [i for i, item in enumerate(inputs) if not isinstance(item, str)]
        outputs: list[tuple[np.ndarray, int] | str] = list(inputs)
        if readable:
            probabilities = self.predictor.run(np.stack([inputs[i] for i in readable]))
            for row, i in enumerate(readable):
                outputs[i] = (probabilities[row], len(readable))
        return outputs if self.max_batch_size > 1 else outputs[0]

    def unbatch(self, output: list[tuple[np.ndarray, int] | str]) -> list[Any]:
        """One output per request."""
        return output

    def encode_response(self, output: Any) -> Any:
        """``{"labels", "scores"}`` with the batch's size, or a 400 saying why it is no image."""
        if isinstance(output, str):
            return JSONResponse({"detail": output}, status_code=400)
        probabilities, batch_size = output
        (prediction,) = self.predictor.predictions(probabilities[None])
        return JSONResponse(prediction.as_dict(), headers={BATCH_SIZE_HEADER: str(batch_size)})


def label_server(
    model: str,
    max_batch_size: int = 8,
    batch_timeout: float = 0.005,
    workers: int = 1,
    threads: int | None = None,
    max_body_bytes: int = 32 * 1024 * 1024,
    timeout: float = 30.0,
) -> litserve.LitServer:
    """The LitServer of an exported model (``spml serve``; start it with ``.run(host, port)``).

    Args:
        model: the ONNX file written by ``spml export``.
        max_batch_size: most requests run through the model together.
        batch_timeout: seconds a batch waits to fill.
        workers: inference worker processes.
        threads: onnxruntime threads per worker (None: onnxruntime's default).
        max_body_bytes: larger bodies are refused (413).
        timeout: seconds a request may wait for its answer (then 504).
    """
    Predictor(model)  # a missing or foreign file fails here, not in a worker after start-up
    api = LabelAPI(model, threads, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    return litserve.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=workers,
        timeout=timeout,
        middlewares=[(ImageBody, {"path": API_PATH, "max_bytes": max_body_bytes})],
    )
