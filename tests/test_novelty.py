"""The far-from-any-digit check: the digit space's fit, its file, and what predict and serve
answer with it."""

import csv
import dataclasses
import io
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digit_recognizer.cli import main
from digit_recognizer.data import load_train_csv
from digit_recognizer.errors import InputError
from digit_recognizer.config import RECIPES
from digit_recognizer.export import _without_augmentation, export_run
from digit_recognizer.model import build_model
from digit_recognizer.novelty import (DIGIT_SPACE_FILE, THRESHOLD_QUANTILE, feature_model,
                                      fit_digit_space, load_digit_space,
                                      probabilities_and_features, save_digit_space)
from digit_recognizer.predict import answer_digits, load_run, run_outputs, run_proba
from digit_recognizer.serve import create_app
from digit_recognizer.train import split_train_val


def clouds(rng, n, d=6, spread=0.3):
    """n points around ten well separated centres in d dimensions, and their labels."""
    centres = np.eye(10, d) * 10 + np.eye(10, d, -6) * 10
    labels = rng.integers(0, 10, n)
    return centres[labels] + spread * rng.standard_normal((n, d)), labels


def test_fit_accepts_the_calibration_quantile_and_rejects_far_points(rng):
    features, labels = clouds(rng, 5000)
    calibration, _ = clouds(rng, 20000)
    space = fit_digit_space(features, labels, calibration)
    outside = (space.relative_distance(calibration) > 1).mean()
    assert outside <= (100 - THRESHOLD_QUANTILE) / 100 + 1e-9 and outside > 0
    looser = dataclasses.replace(space, quantile=99.0)  # another quantile, same calibration
    assert (looser.relative_distance(calibration) > 1).mean() == pytest.approx(0.01, abs=1e-4)
    fresh, _ = clouds(rng, 20000)  # new digits: about the same share is refused
    assert (space.relative_distance(fresh) > 1).mean() < 0.005
    between = np.full((1, 6), 5.0)  # halfway between the clouds, on no digit's
    assert space.relative_distance(between)[0] > 10


def test_digit_space_file_round_trip(rng, tmp_path):
    features, labels = clouds(rng, 2000)
    space = fit_digit_space(features, labels, features)
    save_digit_space(space, tmp_path / DIGIT_SPACE_FILE)
    loaded = load_digit_space(tmp_path / DIGIT_SPACE_FILE)
    for field in dataclasses.fields(space):
        np.testing.assert_array_equal(getattr(loaded, field.name), getattr(space, field.name))
    assert load_digit_space(tmp_path / "none.npz") is None
    (tmp_path / "bad.npz").write_bytes(b"not npz")
    with pytest.raises(InputError, match="bad.npz"):
        load_digit_space(tmp_path / "bad.npz")


@pytest.mark.parametrize("architecture, n_features", [("strided", 4 * 4 * 16),  # 2nd stage maps
                                                     ("compact", 3 * 3 * 32)])  # classifier input
def test_the_check_reads_the_networks_named_maps_else_the_classifiers_input(architecture,
                                                                          n_features):
    """The strided net's digit space lies on its second stage's 4x4x(2w) maps; a net without
    such a layer is read at its last layer's input. Its exported graph reads the same values."""
    model = build_model(RECIPES["default"].replace(architecture=architecture, width=8))
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    p, features = probabilities_and_features(feature_model(model), x)
    assert features.shape == (4, n_features)
    np.testing.assert_allclose(p, np.asarray(model(x, training=False)), atol=1e-6)
    exported_p, exported = _without_augmentation(model, 0, features=True).predict_on_batch(x)
    np.testing.assert_allclose(exported, features, atol=1e-5)
    np.testing.assert_allclose(exported_p, p, atol=1e-6)


def test_a_trained_run_accepts_its_own_validation_digits(tiny_run, small_demo):
    run_dir, config, _ = tiny_run
    assert (run_dir / DIGIT_SPACE_FILE).exists()
    run = load_run(run_dir)
    assert len(run.spaces) == 1
    split = split_train_val(load_train_csv(small_demo.train_csv), config.val_fraction,
                            config.seed)
    answers = answer_digits(run, split.x_val)
    refused = sum(a.label is None for a in answers)
    assert refused <= max(1, 0.001 * len(answers))  # the threshold's calibration
    np.testing.assert_allclose(np.stack([a.probabilities for a in answers]),
                               run_proba(run, split.x_val), atol=1e-5)


def test_with_tta_the_answers_carry_the_tta_probabilities(tiny_run, mnist, tmp_path):
    """The images themselves go through the network once (with their distance); the other
    views are added: the same probabilities as run_proba with TTA, for a run and its export."""
    digits = mnist["test_pixels"][:16]
    for source in (tiny_run[0], export_run(tiny_run[0], "onnx", tmp_path / "m.onnx").path):
        run = load_run(source, tta=True)
        answers = answer_digits(run, digits)
        expected = run_proba(run, digits)
        assert not np.allclose(expected, run_proba(load_run(source), digits), atol=1e-4)
        np.testing.assert_allclose(np.stack([a.probabilities for a in answers]), expected,
                                   atol=1e-5)


def test_a_doubt_space_refuses_what_its_validation_digits_doubt_more_than(rng, tmp_path):
    features, labels = clouds(rng, 2000)
    top = np.sort(rng.uniform(0.5, 1.0, 10000))  # validation digits' top probabilities
    space = fit_digit_space(features, labels, features, confidence=top)
    path = tmp_path / DIGIT_SPACE_FILE
    save_digit_space(space, path)
    loaded = load_digit_space(path)
    np.testing.assert_array_equal(loaded.confidence, top.astype(np.float32))
    assert loaded.doubt_limit == pytest.approx(1 - np.percentile(top, 0.1), rel=1e-6)
    probabilities = np.full((len(top), 10), 0.0)
    probabilities[:, 3] = top
    refused = (loaded.relative_distance(None, probabilities) > 1).mean()
    assert 0 < refused <= 0.001
    with pytest.raises(ValueError, match="probabilities"):
        loaded.relative_distance(features)
    assert load_digit_space(path).confidence is not None
    plain = fit_digit_space(features, labels, features)  # the feature-space check's file
    save_digit_space(plain, path)
    assert load_digit_space(path).confidence is None


def test_a_run_with_made_up_non_digits_checks_doubt_everywhere(tiny_run, small_demo, tmp_path):
    """Trained with made-up non-digits (Config.outliers), a run's check reads doubt instead of
    the feature-space distance; its ONNX export carries the same answer (the export itself
    refuses to write a graph whose distances differ), and so does the HTTP API."""
    from digit_recognizer.train import train

    assert tiny_run[1].outliers == 0 and load_run(tiny_run[0]).spaces[0].confidence is None
    run_dir = tmp_path / "exposed"
    train(tiny_run[1].replace(outliers=0.2), small_demo.train_csv, run_dir, verbose=0)
    run = load_run(run_dir)
    assert run.spaces[0].confidence is not None
    split = split_train_val(load_train_csv(small_demo.train_csv), tiny_run[1].val_fraction,
                            tiny_run[1].seed)
    answers = answer_digits(run, split.x_val)  # calibrated on these: at most 0.1% refused
    assert sum(a.label is None for a in answers) <= max(1, 0.001 * len(answers))
    pixels = load_train_csv(small_demo.train_csv).pixels[:50]
    probabilities, distances = run_outputs(run, pixels)
    np.testing.assert_allclose(distances, (1 - probabilities.max(axis=1))
                               / run.spaces[0].doubt_limit, rtol=1e-4)
    exported = load_run(export_run(run_dir, "onnx", tmp_path / "exposed.onnx").path)
    np.testing.assert_allclose(run_outputs(exported, pixels)[1], distances, rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def strict_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run whose digit space accepts nothing: every image is far."""
    run_dir = tmp_path_factory.mktemp("strict") / "run"
    shutil.copytree(tiny_run[0], run_dir)
    space = load_digit_space(run_dir / DIGIT_SPACE_FILE)
    # no distance and (for a run that reads doubt) no doubt is small enough
    save_digit_space(dataclasses.replace(space, calibration=np.zeros(1, np.float32),
                                         confidence=None if space.confidence is None
                                         else np.full(1, 2.0, np.float32)),
                     run_dir / DIGIT_SPACE_FILE)
    return run_dir


def test_far_images_are_answered_no_digit_by_predict(strict_run, mnist, tmp_path, capsys):
    path = tmp_path / "far.png"
    Image.fromarray(255 - mnist["test_pixels"][0]).save(path)
    assert main(["predict", str(strict_run), str(path)]) == 1  # no image held a digit
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: no digit found (unlike every digit")
    assert main(["predict", str(strict_run), str(path), "--format", "csv"]) == 1
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "label", "probability", "reason"]
    assert rows[1][:3] == [str(path), "", ""] and rows[1][3].startswith("no digit found")


def test_an_onnx_export_answers_far_images_as_its_run_does(strict_run, mnist, tmp_path,
                                                          capsys):
    exported = export_run(strict_run, "onnx", tmp_path / "strict.onnx").path
    path = tmp_path / "far.png"
    Image.fromarray(255 - mnist["test_pixels"][0]).save(path)
    assert main(["predict", str(exported), str(path)]) == 1
    assert "no digit found (unlike every digit" in capsys.readouterr().out


def test_far_images_are_answered_no_digit_by_serve(strict_run, mnist):
    client = TestClient(create_app(strict_run))
    r = client.post("/predict", json={"pixels": mnist["test_pixels"][0].ravel().tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] is None and body["reason"].startswith("no digit found (unlike")
    assert body["top3"] == [] and len(body["probabilities"]) == 10


def test_a_run_without_a_digit_space_still_answers(tiny_run, mnist, tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(tiny_run[0], run_dir)
    (run_dir / DIGIT_SPACE_FILE).unlink()
    run = load_run(run_dir)
    assert run.spaces == ()
    answers = answer_digits(run, mnist["test_pixels"][:5])
    assert all(a.label is not None and a.distance is None for a in answers)
