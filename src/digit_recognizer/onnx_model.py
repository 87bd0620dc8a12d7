"""The exported ONNX model file (`digits export RUN --format onnx`), read with onnxruntime.

One file holds the whole predictor: raw pixels in (float32 (n, 28, 28, 1), 0-255, as for
model.keras), class probabilities out (float32 (n, 10)), and for a run with digit spaces its
relative distance from the digits (DISTANCE_NAME, float32 (n,), above 1: "no digit found",
novelty.py); an ensemble's members (and the TTA
views, if exported with --tta) are averaged inside the graph. What it was made from (the run's
config.json files, its training data, whether TTA is inside) travels in the model's metadata
under METADATA_KEY, so `predict`, `evaluate` and `serve` need nothing else.

This module imports neither TensorFlow nor Keras: inference from an .onnx file needs only
onnxruntime (the package's base install).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError

SUFFIX = ".onnx"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
DISTANCE_NAME = "digit_distance"  # optional second output: above 1, far from any digit
METADATA_KEY = "digit_recognizer"
MAX_FILE_BYTES = 512 * 2**20  # 512 MiB: an ensemble of 100 best-recipe nets is ~70 MiB


def is_onnx_file(path) -> bool:
    return Path(path).suffix.lower() == SUFFIX


class OnnxModel:
    """An exported model, with the one method inference needs from a model
    (`predict_on_batch`, as keras.Model has), and what the export recorded (`info`)."""

    def __init__(self, path: Path, session, info: dict):
        self.path = path
        self.session = session
        self.info = info

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        return self._run([OUTPUT_NAME], x)[0]

    def outputs_on_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, 10), relative distances from the digits (n,)) of a graph that
        has the distance output (has_distance)."""
        probabilities, distances = self._run([OUTPUT_NAME, DISTANCE_NAME], x)
        return probabilities, distances

    def _run(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        """The graph's `names` outputs for inputs x (n, 28, 28, 1), in slices."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 28, 28, 1)
        # A TTA graph runs 7 views of every image through each member: 1/7 of the images per
        # call keeps its activations (and onnxruntime's arena, which keeps its peak) the size
        # of a plain model's.
        step = 1024 // 7 if self.has_tta else 1024
        parts = [self.session.run(names, {INPUT_NAME: x[i:i + step]})
                 for i in range(0, len(x), step)]
        empty = {OUTPUT_NAME: np.empty((0, 10), np.float32),
                 DISTANCE_NAME: np.empty(0, np.float32)}
        return [np.concatenate([part[k] for part in parts]) if parts else empty[name]
                for k, name in enumerate(names)]

    @property
    def has_distance(self) -> bool:
        return DISTANCE_NAME in [o.name for o in self.session.get_outputs()]

    @property
    def has_tta(self) -> bool:
        return bool(self.info.get("tta"))


def load_onnx(path) -> OnnxModel:
    """Open an exported .onnx file for inference; a missing, foreign or broken file is an
    InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file (make one with `digits export RUN -o "
                               f"{path.name}`)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(path, f"is larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise InputError(path, "needs onnxruntime (pip install onnxruntime)") from e
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InputError(path, f"is not a readable ONNX model ({first})") from e
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if ([i.name for i in inputs] != [INPUT_NAME]
            or [o.name for o in outputs] not in ([OUTPUT_NAME], [OUTPUT_NAME, DISTANCE_NAME])
            or list(inputs[0].shape[1:]) != [28, 28, 1] or outputs[0].shape[-1] != 10):
        raise InputError(path, "is not a digit model exported by `digits export` (expected "
                               f"input '{INPUT_NAME}' (n, 28, 28, 1) and output '{OUTPUT_NAME}' "
                               "(n, 10))")
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        info = json.loads(raw) if raw else {}
    except json.JSONDecodeError as e:
        raise InputError(path, f"has unreadable '{METADATA_KEY}' metadata ({e})") from e
    return OnnxModel(path, session, info)
