import json
import shutil
import threading

import numpy as np
import pytest

from digit_recognizer.config import get_recipe
from digit_recognizer.data import load_test_csv, load_train_csv, read_submission, write_train_csv
from digit_recognizer.ensemble import train_members
from digit_recognizer.rundir import claim_member_dir, init_ensemble, is_ensemble, members
from digit_recognizer.errors import InputError
from digit_recognizer.predict import (TTA_SHIFTS, load_run, predict_proba, run_proba,
                                      tta_views)
from digit_recognizer.train import split_train_val

from test_cli import digits

TINY = get_recipe("default").replace(epochs=1, batch_size=64, width=8)


@pytest.fixture(scope="module")
def ensemble_run(small_demo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ensemble")
    added = train_members(TINY, small_demo.train_csv, run_dir, 2, verbose=0)
    return run_dir, added


def test_members_get_their_own_seeds_and_validation_splits(ensemble_run, small_demo):
    run_dir, added = ensemble_run
    assert is_ensemble(run_dir)
    assert [m.index for m in added] == [1, 2]
    assert [m.seed for m in added] == [TINY.seed, TINY.seed + 1]
    assert all(m.usable and m.status == "complete" for m in added)
    assert all(0.0 <= m.best_val_accuracy <= 1.0 and m.train_seconds > 0 for m in added)
    data = load_train_csv(small_demo.train_csv)
    first, second = (split_train_val(data, TINY.val_fraction, m.seed) for m in added)
    assert not np.array_equal(first.y_val, second.y_val) or \
        not np.array_equal(first.x_val, second.x_val)
    info = json.loads((run_dir / "ensemble.json").read_text())
    assert info["data"]["sha256"] == data.sha256


def test_ensemble_probabilities_are_the_members_mean(ensemble_run, small_demo):
    run_dir, _ = ensemble_run
    run = load_run(run_dir)
    assert run.is_ensemble and len(run.models) == 2 and len(run.configs) == 2
    pixels = load_test_csv(small_demo.test_csv).pixels
    each = [predict_proba(model, pixels) for model in run.models]
    assert not np.allclose(each[0], each[1])  # different members, different answers
    np.testing.assert_allclose(run_proba(run, pixels), (each[0] + each[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(run_proba(run, pixels).sum(axis=1), 1.0, atol=1e-5)


def test_half_finished_ensemble_uses_its_finished_members(ensemble_run, tmp_path):
    run_dir = tmp_path / "half"
    shutil.copytree(ensemble_run[0], run_dir)
    # member 02 was interrupted, member 03 claimed its slot and died before any epoch
    config_path = run_dir / "members" / "02" / "config.json"
    info = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**info, "status": "interrupted"}))
    (run_dir / "members" / "03").mkdir()
    states = {m.index: m.status for m in members(run_dir)}
    assert states == {1: "complete", 2: "interrupted", 3: "unstarted"}
    run = load_run(run_dir)
    assert len(run.models) == 1 and run.model_paths[0].parent.name == "01"

    shutil.rmtree(run_dir / "members" / "01")
    with pytest.raises(InputError, match="no finished member"):
        load_run(run_dir)


def test_member_slots_are_claimed_once_across_threads(tmp_path):
    claimed = []
    threads = [threading.Thread(target=lambda: claimed.append(claim_member_dir(tmp_path)[0]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(1, 9))


def test_an_ensemble_refuses_other_data_and_single_runs(ensemble_run, small_demo, tmp_path,
                                                        tiny_run):
    other = load_train_csv(small_demo.train_csv)
    changed = tmp_path / "other.csv"
    write_train_csv(changed, other.pixels[:100], other.labels[:100])
    with pytest.raises(InputError, match="differs from the data"):
        init_ensemble(ensemble_run[0], load_train_csv(changed))
    with pytest.raises(InputError, match="single-model run"):
        init_ensemble(tiny_run[0], other)


def test_tta_views_are_small_moves_of_the_image(mnist):
    pixels = mnist["test_pixels"][:50]
    views = tta_views(pixels)
    assert len(views) == 7 and all(v.shape == pixels.shape for v in views)
    np.testing.assert_array_equal(views[0], pixels)
    # a one-pixel shift moves the ink's centre of mass by one pixel
    cols = np.arange(28)
    centre = (views[0].sum(axis=1) * cols).sum(axis=1) / views[0].sum(axis=(1, 2))
    moved = (views[1].sum(axis=1) * cols).sum(axis=1) / views[1].sum(axis=(1, 2))
    np.testing.assert_allclose(moved - centre, 1.0, atol=0.05)
    from scipy import ndimage  # the shifts are scipy's whole-pixel shifts, exactly

    for view, (dy, dx) in zip(views[1:5], TTA_SHIFTS):
        np.testing.assert_array_equal(view, ndimage.shift(pixels.astype(np.float32),
                                                          (0, dy, dx), order=0, cval=0.0))
    # rotations keep most of the ink and stay in range
    for view in views[5:]:
        assert 0.0 <= view.min() and view.max() <= 255.0
        assert abs(view.sum() / views[0].sum() - 1.0) < 0.1
        assert not np.allclose(view, views[0])


def test_tta_keeps_probabilities_and_changes_them_a_little(ensemble_run, small_demo):
    run = load_run(ensemble_run[0])
    pixels = load_test_csv(small_demo.test_csv).pixels[:64]
    plain, tta = run_proba(run, pixels), run_proba(load_run(ensemble_run[0], tta=True), pixels)
    np.testing.assert_allclose(tta.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(plain, tta)
    assert (plain.argmax(1) == tta.argmax(1)).mean() > 0.5


def test_cli_ensemble_add_members_predict_evaluate(small_demo, tmp_path):
    run_dir = tmp_path / "ens"
    out = digits("train", small_demo.train_csv, "--run-dir", run_dir, "--ensemble", 2,
                 "--epochs", 1, "--batch-size", 64, "--seed", 7)
    assert out.returncode == 0, out.stderr
    # Progress as members run, in order: member 1's epochs and end come before member 2 starts
    lines = out.stdout.splitlines()
    at = {key: next(i for i, line in enumerate(lines) if line.startswith(key))
          for key in ("member 01: started", "member 01: epoch 1/1", "member 01: done",
                      "ensemble: 1/2 members done, 0 running", "member 02: started",
                      "ensemble: 2/2 members done")}
    assert list(at.values()) == sorted(at.values()), lines
    assert "about" in lines[at["ensemble: 1/2 members done, 0 running"]]  # an estimate
    assert "val_accuracy" in lines[at["member 01: epoch 1/1"]]
    # K more members, later, in another process: same recipe, seeds counting on, same data
    out = digits("train", "--run-dir", run_dir, "--add-members", 1)
    assert out.returncode == 0, out.stderr
    found = members(run_dir)
    assert [m.seed for m in found] == [7, 8, 9] and all(m.usable for m in found)
    assert {json.loads((m.run_dir / "config.json").read_text())["config"]["epochs"]
            for m in found} == {1}

    out = digits("train", small_demo.train_csv, "--run-dir", run_dir, "--ensemble", 2)
    assert out.returncode == 2 and "--add-members" in out.stderr

    submission = tmp_path / "s.csv"
    out = digits("predict", run_dir, small_demo.test_csv, "-o", submission, "--tta")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # three members' predict functions: no TensorFlow retracing notes
    assert len(read_submission(submission)) == len(load_test_csv(small_demo.test_csv))
    out = digits("evaluate", run_dir, small_demo.train_csv, "--report", tmp_path / "rep")
    assert out.returncode == 0, out.stderr
    out = digits("export", run_dir, "--output", tmp_path / "ens.onnx")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert len(metrics["model"]["members"]) == 3


def test_members_train_in_parallel_processes(small_demo, tmp_path):
    added = train_members(TINY, small_demo.train_csv, tmp_path, 2, jobs=2)
    assert sorted(m.index for m in added) == [1, 2]
    assert all(m.usable for m in added)
    assert len(load_run(tmp_path).models) == 2


def test_parallel_members_report_their_epochs(small_demo, tmp_path):
    out = digits("train", small_demo.train_csv, "--run-dir", tmp_path / "e", "--ensemble", 2,
                 "--jobs", 2, "--epochs", 2, "--batch-size", 64)
    assert out.returncode == 0, out.stderr
    for member in ("01", "02"):
        for epoch in (1, 2):
            assert f"member {member}: epoch {epoch}/2" in out.stdout, out.stdout
    assert "ensemble: 2/2 members done, 0 running" in out.stdout


def test_resume_finishes_an_ensembles_interrupted_member(ensemble_run, small_demo, tmp_path):
    from digit_recognizer.rundir import claim_member_dir
    from digit_recognizer.train import train
    from test_robustness import StopAtEpoch

    run_dir = tmp_path / "ens"
    shutil.copytree(ensemble_run[0], run_dir)
    index, member_dir = claim_member_dir(run_dir)
    config = TINY.replace(epochs=2, seed=TINY.seed + index - 1)
    with pytest.raises(KeyboardInterrupt):
        train(config, small_demo.train_csv, member_dir, callbacks=[StopAtEpoch(1)], verbose=0)
    assert [m.status for m in members(run_dir)] == ["complete", "complete", "interrupted"]
    assert len(load_run(run_dir).models) == 2  # usable meanwhile, without the stopped one

    out = digits("train", "--resume", run_dir)
    assert out.returncode == 0, out.stderr
    assert [m.status for m in members(run_dir)] == ["complete"] * 3
    assert len(load_run(run_dir).models) == 3
    out = digits("train", "--resume", run_dir)
    assert out.returncode == 2 and "no interrupted or queued member" in out.stderr


def test_pipeline_trains_and_scores_an_ensemble(small_demo, tmp_path):
    from digit_recognizer.pipeline import run

    data = small_demo.train_csv.parent
    summary = run(TINY, data, tmp_path / "ens", verbose=0, members=2, tta=True)
    assert len(members(tmp_path / "ens")) == 2
    assert summary.score is not None and summary.score.n_images == 200
    assert summary.metrics["test_time_augmentation"] is True
    assert len(summary.metrics["model"]["members"]) == 2
    assert len(read_submission(summary.submission)) == 200


def test_pipeline_ensemble_of_one_is_an_ensemble(small_demo, tmp_path):
    # as `digits train --ensemble 1`: `digits run --ensemble 1` must not fall back to a single run
    from digit_recognizer.pipeline import run

    summary = run(TINY, small_demo.train_csv.parent, tmp_path / "one", verbose=0, members=1)
    assert is_ensemble(tmp_path / "one") and len(members(tmp_path / "one")) == 1
    assert not (tmp_path / "one" / "model.keras").exists()
    assert summary.score is not None


def test_an_ensembles_recipe_and_tta_come_from_the_run(ensemble_run, small_demo, tmp_path):
    from fastapi.testclient import TestClient

    from digit_recognizer.evaluate import evaluate_run
    from digit_recognizer.serve import create_app

    run_dir, _ = ensemble_run
    health = TestClient(create_app(run_dir)).get("/healthz").json()
    assert health["recipe"] == TINY.recipe and health["members"] == 2
    run = load_run(run_dir, tta=True)
    assert run.tta and [c["seed"] for c in run.describe()["members"]] == [TINY.seed, TINY.seed + 1]
    from digit_recognizer.errors import DataWarning

    for tta in (False, True):
        with pytest.warns(DataWarning, match="the run's own training file"):
            metrics = evaluate_run(run_dir, small_demo.train_csv, tmp_path / f"r{tta}", tta=tta)
        assert metrics["test_time_augmentation"] is tta


def test_an_ensemble_of_a_file_too_small_writes_nothing(mnist, tmp_path, capsys):
    from digit_recognizer.cli import main

    write_train_csv(tmp_path / "one.csv", mnist["train_pixels"][:1], mnist["train_labels"][:1])
    assert main(["train", str(tmp_path / "one.csv"), "--run-dir", str(tmp_path / "e"),
                 "--ensemble", "2"]) == 2
    assert "needs at least 2 rows" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
