"""HTTP API and drawing page: `digits serve RUN` (FastAPI + uvicorn, localhost by default).

  GET  /          a page with a drawing canvas and live top-3 bars
  GET  /healthz   {"status": "ok", ...}
  POST /predict   an image upload (multipart field "file", or a raw image body), or JSON
                  {"pixels": [784 values 0-255]} -> {"label", "probabilities", "top3"};
                  an image with no digit (blank, too faint, or far from every digit the
                  model knows) -> {"label": null, "reason"}
The model is loaded once, at start-up.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations
# (`request: Request`) at run time.
import errno
import json
import socket
from importlib import resources

import numpy as np

from .errors import InputError
from .images import MIN_INK_CONTRAST, NoDigitFound, image_to_mnist
from .predict import answer_digits, load_run, read_csv_rows, top_k

MAX_BODY_BYTES = 5 * 1024 * 1024  # 5 MiB: a drawing is a few KB, a phone photo a few MB


def create_app(run_dir, tta: bool | None = None):
    """The app for a run; `tta`: average the test-time views (None: as the run's recipe says,
    as `digits predict` reads the same image)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    run = load_run(run_dir, tta)
    answer_digits(run, np.zeros((1, 28, 28), np.uint8))  # trace once, before any request
    page = resources.files("digit_recognizer").joinpath("static/index.html").read_text("utf-8")
    app = FastAPI(title="digit-recognizer", version="0.1.0")

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": str(run.run_dir),
                "recipe": ", ".join(run.recipes), "members": run.n_members,
                "test_time_augmentation": run.uses_tta}

    @app.post("/predict")
    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return error(413, f"payload larger than {MAX_BODY_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return error(413, f"payload larger than {MAX_BODY_BYTES} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json":  # a CSV row's pixels: read as one is
                digit = read_csv_rows(run, _pixels_from_json(bytes(body))[None])[0][0]
            elif content_type == "multipart/form-data":
                digit = image_to_mnist(await _upload_from_multipart(request, bytes(body)),
                                       "upload")
            elif body:
                digit = image_to_mnist(bytes(body), "upload")
            else:
                return error(400, "empty request: send an image or JSON {\"pixels\": [...]}")
        except NoDigitFound as e:  # a valid request: the answer is "no digit", not a guess
            return {"label": None, "reason": e.reason,
                    "probabilities": None, "top3": [], "pixels": None}
        except InputError as e:
            return error(422, str(e))
        answer = answer_digits(run, digit[None])[0]
        body = {"label": answer.label,
                "probabilities": [round(float(p), 6) for p in answer.probabilities],
                "top3": [{"digit": d, "probability": round(p, 6)}
                         for d, p in top_k(answer.probabilities)],
                "pixels": digit.reshape(-1).tolist()}
        if answer.label is None:  # ink, but far from every digit the model knows
            body.update(reason=answer.reason, top3=[])
        return body

    return app


def _pixels_from_json(body: bytes) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError("request", f"is not valid JSON ({e.msg if hasattr(e, 'msg') else e})")
    pixels = payload.get("pixels") if isinstance(payload, dict) else None
    if not isinstance(pixels, list) or len(pixels) != 784:
        raise InputError("request", "JSON must be {\"pixels\": [784 numbers 0-255]}")
    try:
        values = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("request", "pixels must all be numbers") from None
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise InputError("request", "pixels must be finite numbers in 0-255")
    if values.max() - values.min() < MIN_INK_CONTRAST:
        raise NoDigitFound("request", "no digit found (no ink: the pixels span "
                                      f"{values.max() - values.min():.0f} of 255, below "
                                      f"{MIN_INK_CONTRAST})")
    return np.rint(values).astype(np.uint8).reshape(28, 28)


async def _upload_from_multipart(request, body: bytes) -> bytes:
    """The first uploaded file of a multipart form (python-multipart does the parsing)."""
    from starlette.requests import Request

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form()
    for value in form.values():
        if hasattr(value, "read"):
            return await value.read()
    raise InputError("request", "multipart form has no file")


def check_port_free(host: str, port: int) -> None:
    """An InputError now, rather than a server that announces itself and then cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror})"
            raise InputError(f"{host}:{port}", f"port {port} {why}; choose another with "
                                               "--port") from None


def serve(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run an app from `create_app` until Ctrl-C."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
