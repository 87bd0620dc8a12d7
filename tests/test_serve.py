import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digit_recognizer.serve import MAX_BODY_BYTES, create_app


@pytest.fixture(scope="module")
def client(tiny_run):
    run_dir, _, _ = tiny_run
    return TestClient(create_app(run_dir))


def png(mnist_digit):
    buf = io.BytesIO()
    Image.fromarray(255 - np.kron(mnist_digit, np.ones((4, 4), np.uint8))).save(buf, "PNG")
    return buf.getvalue()


def check_prediction(body):
    assert set(body) >= {"label", "probabilities", "top3"}
    assert 0 <= body["label"] <= 9 and len(body["probabilities"]) == 10
    assert abs(sum(body["probabilities"]) - 1) < 1e-3
    assert body["top3"][0]["digit"] == body["label"] and len(body["top3"]) == 3


def test_no_digit_is_an_answer_not_a_guess(client):
    buf = io.BytesIO()
    Image.new("L", (280, 280), 255).save(buf, "PNG")  # the empty canvas
    r = client.post("/predict", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] is None and "no digit found" in body["reason"] and body["top3"] == []
    r = client.post("/predict", json={"pixels": [0] * 784})
    assert r.status_code == 200 and r.json()["label"] is None
    r = client.post("/predict", json={"pixels": [0] * 783 + [255]})  # one bright pixel is ink
    assert r.status_code == 200 and "no ink" not in (r.json().get("reason") or "")
    assert r.json()["pixels"] is not None  # read (reframed: a dot blown up to the 20 px box)


def test_healthz_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/predict" in page.text


def test_answers_average_the_views_when_the_recipe_says_so(tiny_run, client, mnist):
    """As `digits predict RUN IMAGE` reads an image: the recipe's test-time views (`default`:
    on), unless `digits serve --no-tta`."""
    from digit_recognizer.predict import load_run, run_proba

    run_dir = tiny_run[0]
    digit = mnist["test_pixels"][:1]
    health = client.get("/healthz").json()
    assert health["test_time_augmentation"] is True
    plain = TestClient(create_app(run_dir, tta=False))
    assert plain.get("/healthz").json()["test_time_augmentation"] is False
    for app, tta in ((client, True), (plain, False)):
        body = app.post("/predict", json={"pixels": digit.ravel().tolist()}).json()
        expected = run_proba(load_run(run_dir, tta), digit)[0]
        np.testing.assert_allclose(body["probabilities"], expected, atol=2e-6)


def test_predict_upload_raw_and_json(client, mnist):
    digit = mnist["test_pixels"][0]
    r = client.post("/predict", files={"file": ("d.png", png(digit), "image/png")})
    assert r.status_code == 200, r.text
    check_prediction(r.json())
    r = client.post("/predict", content=png(digit), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    check_prediction(r.json())
    r = client.post("/predict", json={"pixels": digit.ravel().tolist()})
    assert r.status_code == 200, r.text
    check_prediction(r.json())
    assert r.json()["pixels"] == digit.ravel().tolist()  # MNIST's framing: used as given


def test_json_pixels_framed_otherwise_are_reframed_as_a_csv_row_is(client, mnist):
    from digit_recognizer.images import reframe_rows
    from test_images import filling_the_frame

    filled = filling_the_frame(mnist["test_pixels"][0])
    r = client.post("/predict", json={"pixels": filled.ravel().tolist()})
    assert r.status_code == 200, r.text
    check_prediction(r.json())
    seen = reframe_rows(filled)[0][0]
    assert (seen != filled).any() and r.json()["pixels"] == seen.ravel().tolist()


@pytest.mark.parametrize("kwargs, status", [
    (dict(json={"pixels": [0] * 783}), 422),
    (dict(json={"pixels": [0] * 783 + [300]}), 422),
    (dict(json={"pixels": ["a"] * 784}), 422),
    (dict(json=[1, 2, 3]), 422),
    (dict(content=b"{not json", headers={"Content-Type": "application/json"}), 422),
    (dict(content=b"not an image", headers={"Content-Type": "image/png"}), 422),
    (dict(content=b"", headers={"Content-Type": "image/png"}), 400),
    (dict(files={"notfile": (None, "x")}), 422),
])
def test_bad_payloads_get_4xx_json(client, kwargs, status):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_oversized_payload_is_rejected(client):
    r = client.post("/predict", content=b"\0" * (MAX_BODY_BYTES + 1),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and "error" in r.json()
