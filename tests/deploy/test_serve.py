"""`spml serve` over real HTTP on 127.0.0.1: answers, refusals, and recovery after each refusal."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from serving import exchange, post, serving, tiny_onnx_model

from spml_lightning import SPMLModule
from spml_lightning.cli import main
from spml_lightning.deploy import Predictor

from image_files import decompression_bomb, noise

MAX_BODY = 200_000  # a non-default --max_body_bytes


def encoded(seed: int, format: str = "PNG", size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.roll(noise(size), seed * 7, axis=1)).save(buffer, format=format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A served tiny model (batches of up to 4), its URL and an in-process predictor of it."""
    model = tiny_onnx_model(tmp_path_factory.mktemp("serve") / "model.onnx")
    flags = ["--model", str(model), "--max_batch_size", "4", "--batch_timeout", "0.05"]
    flags += ["--threads", "1", "--max_body_bytes", str(MAX_BODY)]
    with serving(flags) as url:
        yield url, Predictor(model)


def check_answer(answer: dict, body: bytes, predictor: Predictor) -> None:
    (expected,) = predictor.predict([body])
    assert answer["labels"] == expected.labels
    assert answer["scores"].keys() == expected.scores.keys()
    for name, score in expected.scores.items():
        assert answer["scores"][name] == pytest.approx(score, abs=1e-6)


def test_concurrent_images_get_their_own_labels_and_scores(server):
    url, predictor = server
    bodies = [encoded(i, "PNG" if i % 2 else "JPEG") for i in range(12)]
    with ThreadPoolExecutor(6) as pool:  # concurrent: the worker batches them
        answers = list(pool.map(lambda b: post(url, b, "image/png"), bodies))
    for (status, answer), body in zip(answers, bodies, strict=True):
        assert status == 200, answer
        check_answer(answer, body, predictor)
    assert len({tuple(a["scores"].values()) for _, a in answers}) == 12  # no answer swapped


def test_concurrent_requests_run_in_batches_that_the_answers_report(server):
    url, predictor = server
    (status, answer, headers) = exchange(url, encoded(0), "image/png")
    assert status == 200 and headers["X-Batch-Size"] == "1"  # alone
    bodies = [encoded(i) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:  # 8 at once, batches of up to 4, 50 ms to fill
        answers = list(pool.map(lambda b: exchange(url, b, "image/png"), bodies))
    sizes = [int(headers["X-Batch-Size"]) for _, _, headers in answers]
    assert all(status == 200 for status, _, _ in answers)
    assert max(sizes) > 1 and max(sizes) <= 4, sizes  # batched, never past --max_batch_size
    for (_, answer, _), body in zip(answers, bodies, strict=True):
        check_answer(answer, body, predictor)  # each its own, in a batch


def test_a_long_run_of_requests_is_answered_to_the_last(server):
    # bench/serve.py's launcher once piped the server's output and never read the pipe: the
    # access log (a line per request) filled it after some 700 requests, and the server
    # blocked mid-answer. 1,200 requests, all answered, with a short client timeout.
    url, _ = server
    body = encoded(0)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(lambda _: post(url, body, "image/png", timeout=20)[0], range(1200))
        )
    assert statuses == [200] * 1200


BAD_REQUESTS = [
    (b"", "image/png", 400, "empty body"),
    (b"id,label\n1,cat\n", "image/png", 400, "not an image Pillow can read"),
    (encoded(0)[:200], "image/png", 400, "truncated or corrupt"),
    ("bomb", "image/png", 400, "decompression bomb"),
    (encoded(0), "application/json", 415, "Content-Type application/json is not an image"),
    (encoded(0), None, 415, "is not an image"),
    (b"\x00" * (MAX_BODY + 1), "application/octet-stream", 413, f"body over {MAX_BODY} bytes"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    BAD_REQUESTS,
    ids=["empty", "text", "truncated", "bomb", "json", "no-type", "too-large"],
)
def test_a_bad_request_gets_a_4xx_with_a_message_and_the_next_is_answered(
    server, tmp_path, body, content_type, status, message
):
    url, predictor = server
    if body == "bomb":
        decompression_bomb(tmp_path / "bomb.png")
        body = (tmp_path / "bomb.png").read_bytes()
    got, answer = post(url, body, content_type)
    assert got == status and message in answer["detail"], (got, answer)
    good = encoded(99)
    got, answer = post(url, good, "image/jpeg")
    assert got == 200
    check_answer(answer, good, predictor)


def test_bad_requests_in_a_batch_leave_the_good_ones_answered(server):
    url, predictor = server
    requests = [(encoded(i), "image/png") if i % 2 else (b"junk", "image/png") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: post(url, *r), requests))
    for (status, answer), (body, _) in zip(answers, requests, strict=True):
        if body == b"junk":
            assert status == 400 and "not an image" in answer["detail"]
        else:
            assert status == 200
            check_answer(answer, body, predictor)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to serve: pass --model model.onnx"),
        (["--model", "m.onnx", "--config", "x.yaml"], "--model serves a file as it is"),
        (["--model", "absent.onnx"], "Model file not found: absent.onnx"),
    ],
)
def test_serve_refuses_what_it_cannot_serve(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_serving_a_checkpoint_exports_it_first(tiny_run, tiny_demo_root):
    image = sorted((tiny_demo_root / "images" / "test").iterdir())[0]
    with serving([*tiny_run["args"], "--ckpt_path", "best", "--threads", "1"]) as url:
        status, answer = post(url, image.read_bytes(), "image/png")
    model = SPMLModule.load_from_checkpoint(tiny_run["best"], map_location="cpu")
    assert status == 200 and list(answer["scores"]) == model.class_names
    expected = model.predict_images([str(image)])[0].tolist()
    assert list(answer["scores"].values()) == pytest.approx(expected, abs=1e-4)
