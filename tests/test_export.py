"""digits export: ONNX / LiteRT / SavedModel / web exports agree with Keras; .onnx files predict,
evaluate and serve without TensorFlow."""

import json
import os
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.data import load_test_csv, read_submission, write_test_csv
from digit_recognizer.errors import InputError
from digit_recognizer.export import ORT_WEB_FILES, check_images, export_run, tta_matrix
from digit_recognizer.images import save_digit_png
from digit_recognizer.onnx_model import load_onnx
from digit_recognizer.predict import load_run, run_outputs, run_proba, tta_views

from test_cli import DIGITS, digits
from test_ensemble import ensemble_run  # noqa: F401 - the module's two-member ensemble fixture


@pytest.fixture(scope="module")
def onnx_file(tiny_run, tmp_path_factory):
    return export_run(tiny_run[0], "onnx", tmp_path_factory.mktemp("export") / "model.onnx")


@pytest.fixture(scope="module")
def without_tensorflow(tmp_path_factory):
    """A PYTHONPATH entry that makes `import tensorflow` and `import keras` fail, as on an
    install without the `train` extra."""
    shim = tmp_path_factory.mktemp("no-tensorflow")
    for name in ("tensorflow", "keras", "tf_keras"):
        (shim / name).mkdir()
        (shim / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named {name!r}\", name={name!r})\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def test_onnx_matches_keras_and_records_its_run(tiny_run, onnx_file, small_demo):
    run_dir = tiny_run[0]
    assert onnx_file.max_difference < 1e-4 and onnx_file.members == 1
    pixels = load_test_csv(small_demo.test_csv).pixels
    keras_p = run_proba(load_run(run_dir), pixels)
    onnx_run = load_run(onnx_file.path)
    onnx_p = run_proba(onnx_run, pixels)
    assert np.abs(onnx_p - keras_p).max() < 1e-4
    assert (onnx_p.argmax(1) == keras_p.argmax(1)).all()
    info = load_onnx(onnx_file.path).info
    config = json.loads((run_dir / "config.json").read_text())
    assert info["members"] == [config] and info["tta"] is False
    assert info["data"]["sha256"] == config["data"]["sha256"]
    assert onnx_run.recipes == ["default"] and onnx_run.describe() == config
    # the far-from-any-digit distance travels in the graph, as run_outputs computes it
    assert load_onnx(onnx_file.path).has_distance
    keras_d, onnx_d = run_outputs(load_run(run_dir), pixels)[1], run_outputs(onnx_run, pixels)[1]
    np.testing.assert_allclose(onnx_d, keras_d, rtol=1e-3, atol=1e-3)


def test_tta_views_are_one_matrix_product(mnist):
    images = mnist["test_pixels"][:20].astype(np.float32)
    matrix = tta_matrix()
    moved = (images.reshape(20, 784) @ matrix).reshape(20, 6, 28, 28)
    for k, view in enumerate(tta_views(images)[1:]):
        assert np.abs(moved[:, k] - view).max() < 1e-3  # grey levels of 255


def test_an_ensemble_with_tta_exports_as_one_graph(ensemble_run, small_demo,  # noqa: F811
                                                   tmp_path):
    run_dir, added = ensemble_run
    exported = export_run(run_dir, "onnx", tmp_path / "ens.onnx", tta=True)
    assert exported.members == len(added) == 2 and exported.tta
    pixels = load_test_csv(small_demo.test_csv).pixels
    expected = run_proba(load_run(run_dir, tta=True), pixels)
    run = load_run(exported.path)
    assert len(run.models) == 1 and run.is_ensemble and run.n_members == 2
    assert np.abs(run_proba(run, pixels) - expected).max() < 1e-4
    # the members' mean distance, of the images themselves (not of their TTA views)
    np.testing.assert_allclose(run_outputs(run, pixels)[1],
                               run_outputs(load_run(run_dir), pixels)[1], rtol=1e-3, atol=1e-3)
    with pytest.raises(InputError, match="already averages"):
        load_run(exported.path, tta=True)


@pytest.mark.parametrize("fmt, name", [("litert", "model.tflite"), ("saved_model", "sm")])
def test_litert_and_saved_model_are_checked_against_keras(tiny_run, tmp_path, fmt, name):
    exported = export_run(tiny_run[0], fmt, tmp_path / name)
    assert exported.path.exists() and exported.size_bytes > 10_000
    assert exported.max_difference is not None and exported.max_difference < 1e-4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_export_refuses_bad_targets_and_leaves_old_files(tiny_run, tmp_path):
    old = tmp_path / "model.onnx"
    old.write_bytes(b"old")
    with pytest.raises(InputError, match="should end in .onnx"):
        export_run(tiny_run[0], "onnx", tmp_path / "model.tflite")
    with pytest.raises(InputError, match="not a run directory"):
        export_run(tmp_path / "nope", "onnx", old)
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        export_run(tiny_run[0], "onnx", tmp_path / "dir.onnx")
    assert old.read_bytes() == b"old"
    with pytest.raises(InputError, match="not a readable ONNX model"):
        load_run(old)


@pytest.mark.parametrize("output, message", [(0, "differs from Keras"), (1, "distances differ")])
def test_an_export_that_disagrees_with_its_run_is_not_written(tiny_run, tmp_path, monkeypatch,
                                                              output, message):
    """The ONNX export is checked on both outputs in one pass; either one off -> no file."""
    import digit_recognizer.export as export

    def off(run, pixels):  # what the run answers, with one output moved
        outputs = list(run_outputs(run, pixels))
        outputs[output] = outputs[output] + 0.5
        return tuple(outputs)

    monkeypatch.setattr(export, "run_outputs", off)
    old = tmp_path / "model.onnx"
    old.write_bytes(b"old")
    with pytest.raises(RuntimeError, match=message):
        export_run(tiny_run[0], "onnx", old)
    assert old.read_bytes() == b"old"


def test_web_export_is_a_self_contained_folder(tiny_run, tmp_path):
    site = export_run(tiny_run[0], "web", tmp_path / "site").path
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "local.js", "model.onnx",
                                                       "ort"]
    assert sorted(p.name for p in (site / "ort").iterdir()) == sorted(ORT_WEB_FILES)
    page = (site / "index.html").read_text()
    assert '<script src="ort/ort.wasm.min.js"></script>' in page and "local.js" in page
    for text in (page, (site / "local.js").read_text()):
        assert "http://" not in text and "https://" not in text  # nothing from elsewhere
    assert load_onnx(site / "model.onnx").info["members"]
    (site / "stale").write_text("from an older export")
    export_run(tiny_run[0], "web", site)  # a second export replaces the folder whole
    assert not (site / "stale").exists()


def test_install_without_the_train_extra_has_no_tensorflow():
    requires = metadata.requires("digit-recognizer")
    heavy = [r for r in requires if r.split()[0].lower().startswith(("tensorflow", "keras"))]
    assert heavy and all('extra == "train"' in r for r in heavy), heavy
    base = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("onnxruntime") for r in base)


def test_cli_export_then_predict_without_tensorflow(tiny_run, small_demo, tmp_path,
                                                     without_tensorflow, mnist):
    run_dir = tiny_run[0]
    out = digits("export", run_dir, "-o", tmp_path / "m.onnx")
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "matches Keras" in out.stdout and out.stderr == ""

    def no_tf(*args):
        return subprocess.run([*DIGITS, *map(str, args)], capture_output=True, text=True,
                              env=without_tensorflow, timeout=900, stdin=subprocess.DEVNULL)

    # the shim works: a run directory needs TensorFlow, and says how to get it
    out = no_tf("predict", run_dir, small_demo.test_csv, "-o", tmp_path / "x.csv")
    assert out.returncode == 2 and "digit-recognizer[train]" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

    out = no_tf("predict", tmp_path / "m.onnx", small_demo.test_csv, "-o", tmp_path / "sub.csv")
    assert out.returncode == 0, out.stderr
    # the export is the plain network (`--tta` exports the views), whatever the recipe's `tta`
    assert digits("predict", run_dir, small_demo.test_csv, "-o", tmp_path / "keras.csv",
                  "--no-tta").returncode == 0
    assert (read_submission(tmp_path / "sub.csv") == read_submission(tmp_path / "keras.csv")).all()

    save_digit_png(mnist["test_pixels"][0], tmp_path / "digit.png")
    out = no_tf("predict", tmp_path / "m.onnx", tmp_path / "digit.png", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split(",")[1].isdigit()

    out = no_tf("evaluate", tmp_path / "m.onnx", small_demo.test_csv, "--labels",
                small_demo.answers_csv, "--report", tmp_path / "rep")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rep" / "report.html").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_an_onnx_model_without_tensorflow(onnx_file, without_tensorflow, mnist):
    import httpx

    port = _free_port()
    proc = subprocess.Popen([*DIGITS, "serve", str(onnx_file.path), "--port", str(port)],
                            env=without_tensorflow, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        while True:  # until the server answers, or the process ends: no fixed time
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, f"digits serve exited: {proc.stderr.read()}"
                time.sleep(0.2)
        assert health.json()["recipe"] == "default"
        pixels = [int(v) for v in mnist["test_pixels"][0].reshape(-1)]
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"pixels": pixels},
                            timeout=60).json()
        expected = run_proba(load_run(onnx_file.path), mnist["test_pixels"][:1])[0]
        assert answer["label"] == int(expected.argmax())
        assert np.allclose(answer["probabilities"], expected, atol=1e-5)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_check_images_cover_blank_and_ink():
    images = check_images()
    assert images.dtype == np.uint8 and images.shape == (256, 28, 28)
    assert images[-1].max() == 0 and images[0].max() > 200
