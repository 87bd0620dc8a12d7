import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from digit_recognizer.data import load_train_csv
from digit_recognizer.predict import load_run, predict_labels, predict_proba
from digit_recognizer.train import pixel_statistics, split_train_val


def test_split_is_stratified_seeded_and_disjoint(small_demo):
    data = load_train_csv(small_demo.train_csv)
    a = split_train_val(data, 0.25, seed=3)
    b = split_train_val(data, 0.25, seed=3)
    c = split_train_val(data, 0.25, seed=4)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.y_val, c.y_val)
    assert len(a.x_val) == 100 and len(a.x_train) == 300
    # class proportions agree to within one image per class
    full = np.bincount(data.labels, minlength=10) * 0.25
    assert np.abs(np.bincount(a.y_val, minlength=10) - full).max() <= 1.0


def test_pixel_statistics_are_in_pixel_units():
    x = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    assert pixel_statistics(x) == (127.5, 127.5)
    # the histogram's statistics are those of the pixels themselves, over several chunks
    many = np.random.default_rng(0).integers(0, 256, (3000, 28, 28), dtype=np.uint8)
    mean, std = pixel_statistics(many)
    assert mean == pytest.approx(many.astype(np.float64).mean(), rel=1e-12)
    assert std == pytest.approx(many.astype(np.float64).std(), rel=1e-12)


def test_train_writes_a_complete_run(tiny_run, small_demo):
    run_dir, config, result = tiny_run
    for name in ["model.keras", "config.json", "history.csv", "curves.png"]:
        assert (run_dir / name).stat().st_size > 0, name
    assert not list(run_dir.glob(".*tmp*")), "temporary files left behind"
    info = json.loads((run_dir / "config.json").read_text())
    assert info["status"] == "complete"
    assert info["config"]["epochs"] == 2 and info["config"]["width"] == 8
    train_split = split_train_val(load_train_csv(small_demo.train_csv), config.val_fraction,
                                  config.seed)
    assert info["preprocessing"]["pixel_mean"] == pytest.approx(train_split.x_train.mean())
    assert info["versions"]["keras"] == keras.__version__
    assert info["data"]["val_rows"] == len(train_split.x_val)
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    for column in ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]:
        assert history[column].notna().all(), column
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert config.checkpoint == "last" and result.best_epoch == 2  # `default` keeps the last
    assert result.best_val_accuracy == pytest.approx(history["val_accuracy"].iloc[-1])


def _kept_model_validation_accuracy(run_dir, train_csv, config):
    model = load_run(run_dir).models[0]
    split = split_train_val(load_train_csv(train_csv), config.val_fraction, config.seed)
    return (predict_labels(predict_proba(model, split.x_val)) == split.y_val).mean()


def test_saved_model_is_the_kept_epoch_and_reloads(tiny_run, small_demo):
    run_dir, config, result = tiny_run
    assert _kept_model_validation_accuracy(run_dir, small_demo.train_csv, config) == \
        pytest.approx(result.best_val_accuracy, abs=1e-6)


def test_checkpoint_best_keeps_the_first_epoch_with_the_highest_validation_accuracy(
        small_demo, tmp_path):
    from digit_recognizer.config import get_recipe
    from digit_recognizer.train import train

    # On this machine the run validates at 0.65, 0.825, 0.825: epoch 2 is kept, not the last.
    # Wherever the peak falls, the saved model must be that epoch's.
    config = get_recipe("default").replace(epochs=3, batch_size=64, width=8, checkpoint="best")
    result = train(config, small_demo.train_csv, tmp_path, verbose=0)
    val = pd.read_csv(tmp_path / "history.csv")["val_accuracy"]
    assert result.best_epoch == int(val.idxmax()) + 1
    assert result.best_val_accuracy == pytest.approx(val.max())
    assert _kept_model_validation_accuracy(tmp_path, small_demo.train_csv, config) == \
        pytest.approx(val.max(), abs=1e-6)


def test_the_kept_epoch_rule_and_the_saver_that_applies_it(tmp_path):
    """One rule (callbacks.kept_epoch_index) for the saver and for the result: "best" keeps
    the first of equal maxima and never an epoch without a value; the saver weighs the epochs
    of an interrupted run (history), not a re-run epoch's old row."""
    from digit_recognizer.callbacks import History, KeptModelSaver, kept_epoch_index

    assert kept_epoch_index([0.5, 0.9, 0.9, 0.7], "best") == 1
    assert kept_epoch_index([0.5, float("nan"), None, 0.6], "best") == 3
    assert kept_epoch_index([0.5, 0.9, 0.7], "last") == 2
    saved = []

    class Model:
        def save(self, path):
            saved.append(path)
            Path(path).write_bytes(b"m")

    history = History(tmp_path / "history.csv", [{"epoch": 1, "val_accuracy": 0.8},
                                                 {"epoch": 2, "val_accuracy": 0.95}])
    saver = KeptModelSaver(tmp_path / "model.keras", "val_accuracy", "best", history)
    saver.set_model(Model())
    saver.on_epoch_end(2, {"val_accuracy": 0.9})  # third epoch: below epoch 2's
    assert saved == []
    saver.on_epoch_end(1, {"val_accuracy": 0.9})  # epoch 2 re-run: its old 0.95 does not count
    saver.on_epoch_end(2, {"val_accuracy": 0.96})
    assert len(saved) == 2 and (tmp_path / "model.keras").exists()


def test_onecycle_schedule_warms_up_then_decays(tiny_run):
    from digit_recognizer.config import get_recipe
    from digit_recognizer.train import learning_rate_schedule

    config = get_recipe("default").replace(learning_rate=0.01, epochs=10, warmup_fraction=0.2)
    schedule = learning_rate_schedule(config, steps_per_epoch=100)  # 1000 steps, 200 warm-up
    lr = np.array([float(schedule(step)) for step in range(0, 1001, 50)])
    warm_up, decay = lr[:5], lr[4:]  # steps 0..200, 200..1000
    assert lr[0] == pytest.approx(0.01 / 20)
    assert np.all(np.diff(warm_up) > 0) and lr[4] == pytest.approx(0.01)
    assert np.all(np.diff(decay) < 0) and lr[-1] == pytest.approx(0.0, abs=1e-9)
    # and the trained run logged it: end of training is near zero
    history = pd.read_csv(tiny_run[0] / "history.csv")
    assert history["learning_rate"].iloc[-1] < 0.01 * history["learning_rate"].max()


@pytest.mark.parametrize("recipe", ["quick", "best"])
def test_recipe_one_epoch_smoke(recipe, small_demo, tmp_path):
    """The recipe as shipped (its architecture, schedule, steps per call), one epoch on tiny
    data: a loadable model that predicts probabilities."""
    from digit_recognizer.config import get_recipe
    from digit_recognizer.train import train

    config = get_recipe(recipe).replace(epochs=1)
    result = train(config, small_demo.train_csv, tmp_path / "run", verbose=0)
    assert result.epochs_run == 1 and 0.0 <= result.best_val_accuracy <= 1.0
    run = load_run(tmp_path / "run")
    probabilities = predict_proba(run.models[0], load_train_csv(small_demo.train_csv).pixels[:7])
    assert probabilities.shape == (7, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["recipe"] == recipe


def test_steps_per_call_do_not_change_the_training(small_demo, tmp_path):
    """The recipes run 32 steps per Python call for speed alone: the same seed gives the same
    history and weights with 1 step per call (the schedule counts optimizer steps, the
    augmentation's random draws go step by step)."""
    from digit_recognizer.config import get_recipe
    from digit_recognizer.train import train

    config = get_recipe("default").replace(epochs=2, width=8, batch_size=64)
    runs = [train(config.replace(steps_per_execution=n), small_demo.train_csv,
                  tmp_path / f"spe{n}", verbose=0) for n in (1, 4)]
    columns = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    np.testing.assert_allclose(runs[0].history[columns].to_numpy(),
                               runs[1].history[columns].to_numpy(), rtol=1e-5, atol=1e-6)
    weights = [load_run(tmp_path / f"spe{n}").models[0].get_weights() for n in (1, 4)]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_distillation_trains_on_the_teachers_probabilities(tiny_run, small_demo, tmp_path):
    """--distill TEACHER: the targets are the teacher's probabilities for the training rows (as
    predict computes them), in the order of the rows, and the run records its teacher."""
    from digit_recognizer.config import get_recipe
    from digit_recognizer.predict import run_proba
    from digit_recognizer.train import make_dataset, teacher_targets, train

    teacher_dir = tiny_run[0]
    data = load_train_csv(small_demo.train_csv)
    targets = teacher_targets(teacher_dir, data.pixels[:50])
    np.testing.assert_allclose(targets, run_proba(load_run(teacher_dir), data.pixels[:50]),
                               rtol=1e-6)
    assert not np.allclose(targets, np.eye(10)[data.labels[:50]])  # soft, not the labels
    softer = teacher_targets(teacher_dir, data.pixels[:50], temperature=3.0)
    np.testing.assert_allclose(softer.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(softer.argmax(axis=1), targets.argmax(axis=1))
    assert (softer.max(axis=1) <= targets.max(axis=1) + 1e-6).all()
    np.testing.assert_allclose(softer, targets ** (1 / 3) / (targets ** (1 / 3)).sum(
        axis=1, keepdims=True), rtol=1e-4)
    batches = list(make_dataset(data.pixels[:50], targets, 16, False, 0))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), targets)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches])[..., 0],
                                  data.pixels[:50].astype(np.float32))

    config = get_recipe("quick").replace(epochs=1, teacher=str(teacher_dir))
    result = train(config, data, tmp_path / "student", verbose=0)
    assert result.epochs_run == 1 and 0.0 <= result.best_val_accuracy <= 1.0
    saved = json.loads((tmp_path / "student" / "config.json").read_text())["config"]
    assert saved["teacher"] == str(teacher_dir)


def test_distilling_from_a_missing_run_fails_before_training(small_demo, tmp_path):
    from digit_recognizer.config import get_recipe
    from digit_recognizer.errors import InputError
    from digit_recognizer.train import train

    config = get_recipe("quick").replace(epochs=1, teacher=str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="nowhere"):
        train(config, small_demo.train_csv, tmp_path / "student", verbose=0)
    assert not (tmp_path / "student").exists()  # nothing written
    from digit_recognizer.ensemble import train_members
    with pytest.raises(InputError, match="nowhere"):  # an ensemble of students: no ensemble.json
        train_members(config, small_demo.train_csv, tmp_path / "student", count=2)
    assert not (tmp_path / "student").exists()
    (tmp_path / "student").mkdir()
    with pytest.raises(InputError, match="its own teacher"):
        train(config.replace(teacher=str(tmp_path / "student")), small_demo.train_csv,
              tmp_path / "student", verbose=0)


def test_weight_average_is_what_validation_the_saver_and_observers_see(small_demo, tmp_path):
    """`ema`: the averaged weights, not the last step's, are validated, saved as model.keras
    and shown to a caller's callbacks at each epoch's end. At a momentum of 1 - 1e-7 the
    average barely leaves the first step's weights (Keras starts it there) while training
    moves the raw ones."""
    from digit_recognizer.config import get_recipe
    from digit_recognizer.train import train

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.raw = [w.copy() for w in self.model.get_weights()]
            if not hasattr(self, "first"):
                self.first = self.raw

        def on_epoch_end(self, epoch, logs=None):
            self.seen = [w.copy() for w in self.model.get_weights()]

    def largest_change(weights, reference):
        return max(float(np.abs(a - b).max()) for a, b in zip(weights, reference))

    config = get_recipe("quick").replace(epochs=2, batch_size=64, width=8, ema=1 - 1e-7,
                                         steps_per_execution=1)
    watch = Watch()
    result = train(config, small_demo.train_csv, tmp_path / "run", callbacks=[watch], verbose=0)
    kernels = [i for i, w in enumerate(watch.first) if w.ndim > 1]
    pick = lambda weights: [weights[i] for i in kernels]  # noqa: E731
    assert largest_change(pick(watch.raw), pick(watch.first)) > 1e-2  # training moved them
    assert largest_change(pick(watch.seen), pick(watch.first)) < 1e-5  # the average did not
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert largest_change([w for w in saved.get_weights() if w.ndim > 1],
                          pick(watch.first)) < 1e-5
    assert result.epochs_run == 2


def test_augmentation_runs_in_the_input_pipeline_on_tensorflow(small_demo, tmp_path):
    """On TensorFlow the recipe's augmentation moves from the model into the tf.data pipeline
    (it overlaps the step there): the trained model has no augment block, while the pipeline's
    batches are changed images, new ones each epoch, the same ones for the same seed."""
    from digit_recognizer.backend import keras
    from digit_recognizer.config import get_recipe
    from digit_recognizer.model import build_augmentation
    from digit_recognizer.train import make_dataset, train

    assert keras.backend.backend() == "tensorflow"
    data = load_train_csv(small_demo.train_csv)
    config = get_recipe("default").replace(epochs=1)

    def two_epochs(seed):
        ds = make_dataset(data.pixels[:40], data.labels[:40], 16, False, seed,
                          augment=build_augmentation(config.replace(seed=seed)))
        return [np.concatenate([x.numpy() for x, _ in ds])[..., 0] for _ in range(2)]

    first, again = two_epochs(2), two_epochs(2)
    raw = data.pixels[:40].astype(np.float32)
    assert not np.allclose(first[0], raw) and not np.allclose(first[0], first[1])
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.allclose(first[0], two_epochs(3)[0])

    train(config, data, tmp_path / "run", verbose=0)
    model = load_run(tmp_path / "run").models[0]
    assert "augment" not in [layer.name for layer in model.layers]


def test_a_run_trained_in_bfloat16_records_it_and_saves_float32(small_demo, tmp_path,
                                                                  monkeypatch):
    """precision "auto" on a CPU with bfloat16 instructions trains in mixed bfloat16,
    config.json says so, and model.keras is the float32 copy of the kept epoch's weights."""
    from digit_recognizer import backend
    from digit_recognizer.config import get_recipe
    from digit_recognizer.train import train

    monkeypatch.setattr(backend, "native_bfloat16", lambda cpuinfo=None: True)
    config = get_recipe("default").replace(epochs=2, width=8, batch_size=64, precision="auto")
    result = train(config, small_demo.train_csv, tmp_path / "run", verbose=0)
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["config"]["precision"] == "mixed_bfloat16"
    model = load_run(tmp_path / "run").models[0]
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    # the trained weights, not a fresh network's: validation reads as it did in training
    assert _kept_model_validation_accuracy(tmp_path / "run", small_demo.train_csv, config) == \
        pytest.approx(result.best_val_accuracy, abs=0.03)
    assert result.best_val_accuracy > 0.5
