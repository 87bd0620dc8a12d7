"""Take a trained run elsewhere: ONNX, LiteRT, a TensorFlow SavedModel, or a static web page.

Every export is one inference graph: raw pixels in (float32 (n, 28, 28, 1), 0-255, as for
model.keras), probabilities out (float32 (n, 10)); ONNX and web exports of a run with digit
spaces also output each image's relative distance from the digits (novelty.py), so they answer
"no digit found" as the run does (LiteRT and SavedModel exports: probabilities only). An
ensemble's members are averaged inside it, and with `tta` the 7 test-time views too, so whoever
runs the file needs no code of ours. The training-only augmentation layers are left out (their
random ops do not convert, and at inference they do nothing). The ONNX and LiteRT files are
checked against Keras before they are kept; every output is written atomically (a file, or a
folder renamed into place).

Needs Keras/TensorFlow (the `train` extra); running an exported .onnx file does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_path, check_writable, write_text_atomic
from .images import INK_GAMMA, MIN_INK_CONTRAST
from .novelty import FEATURE_MAPS, features_tensor
from .onnx_model import DISTANCE_NAME, INPUT_NAME, METADATA_KEY, OUTPUT_NAME, load_onnx
from .predict import LoadedRun, load_run, run_outputs, run_proba, tta_views

FORMATS = ("onnx", "litert", "saved_model", "web")
DEFAULT_OUTPUT = {"onnx": "model.onnx", "litert": "model.tflite", "saved_model": "saved_model",
                  "web": "site"}
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
# onnxruntime-web's files (fetched from npm when the package is built: `make web-runtime`)
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
CHECK_TOLERANCE = 1e-4  # max |probability difference| between an export and Keras


@dataclass(frozen=True)
class Export:
    path: Path
    format: str
    size_bytes: int  # the file, or everything in the folder
    members: int
    tta: bool
    max_difference: float | None  # vs Keras on the check images; None: not checked


def export_run(run_dir, fmt: str, output=None, tta: bool = False) -> Export:
    """Export a run directory (single model or ensemble) as `fmt` to `output` (a file for
    onnx/litert, a folder for saved_model/web); default names in DEFAULT_OUTPUT."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    output = Path(output or DEFAULT_OUTPUT[fmt])
    if fmt in SUFFIXES and output.suffix.lower() != SUFFIXES[fmt]:
        raise InputError(output, f"should end in {SUFFIXES[fmt]} for --format {fmt}")
    if fmt in SUFFIXES and output.is_dir():
        raise InputError(output, "is a folder; give a file name")
    if fmt not in SUFFIXES and output.exists() and not output.is_dir():
        raise InputError(output, "exists and is not a folder")
    if fmt == "web":
        missing = [f for f in ORT_WEB_FILES if not _ort_web_file(f).is_file()]
        if missing:  # before the run loads: seconds saved on a half-installed package
            raise InputError(_ort_web_file(missing[0]), "missing: onnxruntime-web is fetched "
                             "from npm when the package is built (`make web-runtime`)")
    if Path(run_dir).suffix.lower() == ".onnx":
        raise InputError(run_dir, "is already an export; give the run directory it came from")
    check_writable(output.parent)  # before seconds of TensorFlow start-up
    run = load_run(run_dir, tta)
    # ONNX (and the web page, which runs it) also carry the far-from-any-digit check
    model = inference_model(run, distance=fmt in ("onnx", "web"))
    if fmt == "onnx":
        difference = _export_onnx(run, model, output)
    elif fmt == "litert":
        difference = _export_litert(run, model, output)
    elif fmt == "saved_model":
        with _atomic_dir(output) as tmp:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
            difference = _check_saved_model(run, tmp, output)
    else:
        difference = _export_web(run, model, output)
    size = (output.stat().st_size if output.is_file()
            else sum(p.stat().st_size for p in output.rglob("*") if p.is_file()))
    return Export(output, fmt, size, run.n_members, tta, difference)


# ---------------------------------------------------------------------------------------------
# The inference graph


def inference_model(run: LoadedRun, distance: bool = False):
    """One Keras model: pixels (n, 28, 28, 1) 0-255 -> the run's probabilities (n, 10), and
    with `distance` (a run with digit spaces) also each image's relative distance from the
    digits (n,), as predict.run_outputs computes it (novelty.py; above 1: no digit)."""
    from .backend import keras

    ops = keras.ops
    pixels = keras.Input((28, 28, 1), name=INPUT_NAME)
    distance = distance and bool(run.spaces)
    nets = [_without_augmentation(m, i, features=distance) for i, m in enumerate(run.models)]
    x, n_views = pixels, 1
    if run.tta:
        views = tta_matrix()  # (784, 6 * 784)
        n_views = 1 + views.shape[1] // 784
        flat = ops.reshape(pixels, (-1, 784))
        moved = ops.reshape(ops.matmul(flat, views), (-1, n_views - 1, 784))
        x = ops.reshape(ops.concatenate([flat[:, None, :], moved], axis=1), (-1, 28, 28, 1))
    outputs = [net(x) for net in nets]
    features = []
    if distance:
        outputs, features = [o[0] for o in outputs], [o[1] for o in outputs]
    probabilities = outputs[0] if len(outputs) == 1 else ops.mean(ops.stack(outputs), axis=0)
    if n_views > 1:
        probabilities = ops.mean(ops.reshape(probabilities, (-1, n_views, 10)), axis=1)
    if distance:  # of the image itself (view 0), mean over members, as run_outputs
        plain = [ops.reshape(f, (-1, n_views, f.shape[-1]))[:, 0] for f in features]
        plain_p = [ops.reshape(p, (-1, n_views, 10))[:, 0] for p in outputs]  # per member
        relative = [_relative_distance(f, p, space)
                    for f, p, space in zip(plain, plain_p, run.spaces)]
        far = relative[0] if len(relative) == 1 else ops.mean(ops.stack(relative), axis=0)
        model = keras.Model(pixels, [probabilities, far], name="digits_inference")
    else:
        model = keras.Model(pixels, probabilities, name="digits_inference")
    model(np.zeros((1, 28, 28, 1), np.float32))  # built and called: export needs both
    return model


def _relative_distance(features, probabilities, space):
    """DigitSpace.relative_distance as a layer of the graph: min over the digits of
    (f - m) P (f - m) / threshold. The means and precision are the layer's (frozen) weights,
    so the converters store them in the file rather than asking for them as inputs. A space
    that reads doubt: (1 - the top probability) / its limit."""
    from .backend import keras

    ops = keras.ops
    if space.confidence is not None:
        return (1.0 - ops.max(probabilities, axis=-1)) / space.doubt_limit

    class DigitDistance(keras.layers.Layer):
        def build(self, input_shape):
            self.means = self.add_weight(shape=space.means.shape, trainable=False,
                                         initializer=keras.initializers.Constant(space.means))
            self.precision = self.add_weight(
                shape=space.precision.shape, trainable=False,
                initializer=keras.initializers.Constant(space.precision))

        def call(self, f):
            centred = ops.expand_dims(f, 1) - self.means  # (n, 10, d)
            squared = ops.sum(ops.matmul(centred, self.precision) * centred, axis=-1)
            return ops.min(squared, axis=1) / space.threshold

    return DigitDistance()(features)


def _without_augmentation(model, index: int, features: bool = False):
    """The trained network without its training-only `augment` block (identity at inference).
    Our models are chains (one input per layer), so the layers are re-applied in order."""
    from .backend import keras

    x = inputs = keras.Input((28, 28, 1))
    maps = None
    for layer in model.layers[1:]:
        if layer.name == "augment":
            continue
        if len(layer._inbound_nodes) != 1:  # noqa: SLF001 - a shared layer: not a chain
            raise ValueError(f"layer {layer.name} is not part of a simple chain")
        last_input, x = x, layer(x)
        if layer.name == FEATURE_MAPS:
            maps = x
    name = f"member_{index + 1:02d}"
    if not features:
        return keras.Model(inputs, x, name=name)
    # the last layer is the classifier: its input is FEATURE_LAYER's input
    return keras.Model(inputs, [x, features_tensor(maps, last_input)], name=name)


def tta_matrix() -> np.ndarray:
    """The 6 test-time views besides the image itself as one linear map, float32
    (784, 6 * 784): row i holds the views of a one-pixel image at pixel i. Shifts (zero-filled)
    and bilinear rotations (zero-filled) are linear in the pixels, so x @ M gives exactly what
    tta_views() computes, in one matrix product inside the graph."""
    basis = np.eye(784, dtype=np.float32).reshape(784, 28, 28)
    views = tta_views(basis)[1:]  # the first view is the image itself
    return np.concatenate([v.reshape(784, 784) for v in views], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Formats


def check_images(n: int = 256, seed: int = 0) -> np.ndarray:
    """Inputs for comparing an export with Keras: noise, sparse strokes and a blank image."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n // 2, 28, 28))
    sparse = np.where(rng.random((n // 2 - 1, 28, 28)) < 0.15,
                      rng.integers(128, 256, (n // 2 - 1, 28, 28)), 0)
    return np.concatenate([noise, sparse, np.zeros((1, 28, 28))]).astype(np.uint8)


def _check(run: LoadedRun, predict, path) -> float:
    images = check_images()
    got = np.asarray(predict(images.astype(np.float32)[..., None]))
    return _probabilities_agree(run_proba(run, images), got, path)


def _probabilities_agree(expected, got, path) -> float:
    difference = float(np.abs(got - expected).max())
    if not difference < CHECK_TOLERANCE:
        raise RuntimeError(f"{path}: the export differs from Keras by {difference:.2e} "
                           f"(> {CHECK_TOLERANCE}); not written")
    return difference


def export_info(run: LoadedRun) -> dict:
    """What an exported model records about itself (ONNX metadata, the web page's info)."""
    from . import __version__
    from .backend import keras

    return {"exported_by": f"digit-recognizer {__version__}", "source": str(run.run_dir),
            "input": f"{INPUT_NAME}: float32 (n, 28, 28, 1), raw pixels 0-255",
            "output": f"{OUTPUT_NAME}: float32 (n, 10)" + (
                f"; {DISTANCE_NAME}: float32 (n,), above 1 far from any digit"
                if run.spaces else ""), "tta": run.tta,
            "members": list(run.configs), "ensemble": run.ensemble, "data": run.training_data,
            "versions": {"keras": keras.__version__, "backend": keras.backend.backend()}}


def _export_onnx(run: LoadedRun, model, output: Path) -> float:
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with _quiet_stderr(), warnings.catch_warnings():
            # tf2onnx logs its conversion through absl, and keras's copy of it probes
            # `np.object` (a NumPy 2 FutureWarning): neither is for the user
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(raw), format="onnx", verbose=False)
        graph = onnx.load(str(raw))
    for index, name in enumerate([OUTPUT_NAME, DISTANCE_NAME][:len(graph.graph.output)]):
        _rename_output(graph, name, index)
    for tensor in (graph.graph.input[0], *graph.graph.output):
        tensor.type.tensor_type.shape.dim[0].dim_param = "n"
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(export_info(run))
    graph.producer_name = "digit-recognizer"
    onnx.checker.check_model(graph)
    with atomic_path(output) as tmp:
        onnx.save(graph, str(tmp))
        exported = load_onnx(tmp)
        if exported.has_distance:
            return _check_with_distance(run, exported, output)
        return _check(run, exported.predict_on_batch, output)


def _check_with_distance(run: LoadedRun, exported, path) -> float:
    """Both outputs from one pass over the check images: the probabilities as _check, and the
    distances as run_outputs gives them (float32 in the graph, float64 in NumPy) to 1e-3 of
    the threshold, or of the distance where it is beyond: the answer turns at 1."""
    images = check_images()
    expected, expected_distance = run_outputs(run, images)
    got, distance = exported.outputs_on_batch(images.astype(np.float32)[..., None])
    difference = float(np.max(np.abs(distance - expected_distance)
                              / np.maximum(np.abs(expected_distance), 1.0)))
    if not difference < 1e-3:
        raise RuntimeError(f"{path}: the export's distances differ from Keras's by "
                           f"{difference:.2e} of the threshold; not written")
    return _probabilities_agree(expected, got, path)


def _rename_output(graph, name: str, index: int = 0) -> None:
    old = graph.graph.output[index].name
    for node in graph.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    graph.graph.output[index].name = name


def _export_litert(run: LoadedRun, model, output: Path) -> float | None:
    with atomic_path(output) as tmp:
        with _quiet_stderr():
            model.export(str(tmp), format="litert", verbose=False)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            return None  # written, but not checked: say so (Export.max_difference is None)

        def predict(x):
            with _quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                interpreter = Interpreter(model_path=str(tmp))
                detail = interpreter.get_input_details()[0]
                interpreter.resize_tensor_input(detail["index"], x.shape)
                interpreter.allocate_tensors()
                interpreter.set_tensor(detail["index"], x)
                interpreter.invoke()
                return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

        return _check(run, predict, output)


def _check_saved_model(run: LoadedRun, folder: Path, output: Path) -> float:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    return _check(run, lambda x: loaded.serve(tf.constant(x)).numpy(), output)


def _ort_web_file(name: str) -> Path:
    return Path(str(resources.files("digit_recognizer").joinpath("static", "ort", name)))


def _export_web(run: LoadedRun, model, output: Path) -> float:
    """index.html (the served page, predicting in the browser), model.onnx, app.js, ort/."""
    static = resources.files("digit_recognizer").joinpath("static")
    with _atomic_dir(output) as site:
        difference = _export_onnx(run, model, site / "model.onnx")
        (site / "ort").mkdir()
        for name in ORT_WEB_FILES:
            shutil.copyfile(_ort_web_file(name), site / "ort" / name)
        local = static.joinpath("local.js").read_text("utf-8")
        for constant, value in (("MIN_INK_CONTRAST = 32", MIN_INK_CONTRAST),
                                ("INK_GAMMA = 1.2", INK_GAMMA)):
            assert constant in local, f"static/local.js lost `{constant}`"
            local = local.replace(constant, f"{constant.split(' = ')[0]} = {value}")
        write_text_atomic(site / "local.js", local)
        page = static.joinpath("index.html").read_text("utf-8")
        marker = "<!-- local model -->"
        assert marker in page, "static/index.html lost its local-model marker"
        write_text_atomic(site / "index.html", page.replace(
            marker, '<script src="ort/ort.wasm.min.js"></script>\n'
                    '<script src="local.js"></script>'))
    return difference


@contextlib.contextmanager
def _atomic_dir(output: Path):
    """Build a folder beside `output`, then rename it into place (an old one is replaced only
    once the new one is complete)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; the result should look like mkdir()'s
    try:
        yield tmp
        if output.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _quiet_stderr():
    """tf2onnx and the TFLite converter log through absl and C++ to file descriptor 2: none of
    it is for the user (a failure raises, and DIGITS_DEBUG=1 shows everything)."""
    from .backend import stderr_filtered

    return stderr_filtered(keep=lambda text: "")
