"""Recipe sweeps on Ray Tune: variants of a recipe scored by k-fold cross-validation on the
training file only, proposed by Optuna, the weak ones stopped after their first folds (ASHA).

    DIR/results.csv       one row per trial: its fields, CV accuracy, folds done, seconds
    DIR/sweep.png         CV accuracy against training time
    DIR/best-recipe.json  the best trial that ran every fold, for `digits train --recipe FILE`
    DIR/tune/             Ray Tune's own records of the trials

A trial's score is the mean over folds of the validation accuracy after the LAST epoch (no
epoch is picked on the data that scores it). A trial reports after each fold; ASHA compares
trials at the same number of folds and stops the ones in the bottom half.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import DigitsData, load_train_csv
from .errors import InputError
from .files import atomic_path, read_json, write_json_atomic, write_text_atomic

RESULTS_FILE, PLOT_FILE, BEST_FILE = "results.csv", "sweep.png", "best-recipe.json"
# The default search space, around the base recipe (the epochs stay the recipe's or --epochs).
DEFAULT_SPACE = {
    "learning_rate": {"loguniform": [1e-3, 1.5e-2]},
    "width": {"choice": [16, 24, 32, 48]},
    "dropout": {"uniform": [0.0, 0.4]},
    "label_smoothing": {"choice": [0.0, 0.05, 0.1]},
    "batch_size": {"choice": [64, 128, 256]},
}
KINDS = ("choice", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    trials: list[dict]  # one per trial: fields, cv_accuracy, folds_done, seconds
    best: dict | None  # the best trial that completed every fold
    best_config: Config | None


def load_space(path) -> dict:
    """A search space file (JSON, or YAML if PyYAML is installed): {field: {"choice": [...]}
    | {"uniform": [lo, hi]} | {"loguniform": [lo, hi]} | {"randint": [lo, hi]} | value}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such search space file")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:
            raise InputError(path, "is YAML, which needs PyYAML (or give JSON)") from e
        try:
            space = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise InputError(path, f"is not valid YAML ({str(e).splitlines()[0]})") from e
    else:
        space = read_json(path)
    check_space(space, path)
    return space


def check_space(space, path="search space") -> None:
    fields = {f.name for f in dataclasses.fields(Config)} - {"recipe", "seed", "val_fraction"}
    if not isinstance(space, dict) or not space:
        raise InputError(path, "should be an object of {field: distribution}")
    for name, spec in space.items():
        if name not in fields:
            raise InputError(path, f"'{name}' is not a field a sweep can vary; choose from "
                                   f"{', '.join(sorted(fields))}")
        if isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in KINDS:
                raise InputError(path, f"'{name}': give one of {', '.join(KINDS)}, e.g. "
                                       '{"choice": [16, 32]}')
            kind, values = next(iter(spec.items()))
            if not isinstance(values, list) or not values or (kind != "choice"
                                                               and len(values) != 2):
                takes = "a list of values" if kind == "choice" else "[low, high]"
                raise InputError(path, f"'{name}': {kind} takes {takes}")


def _tune_space(space: dict) -> dict:
    from ray import tune

    out = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            out[name] = spec
            continue
        kind, values = next(iter(spec.items()))
        out[name] = (tune.choice(values) if kind == "choice" else
                     getattr(tune, kind)(*values))
    return out


def _trial(params: dict, base: dict, pixels, labels, data_path: str, sha256: str,
           folds: int, seed: int, threads: int) -> None:
    """One trial (in a Ray worker): train each fold, report the running mean of the folds'
    last-epoch validation accuracy after each."""
    from ray import tune

    from .backend import limit_threads
    from .train import kfold_splits, train

    limit_threads(threads)
    config = Config.from_dict({**base, **params})
    data = DigitsData(pixels, labels, data_path, sha256)
    scores, start = [], time.perf_counter()
    for k, split in enumerate(kfold_splits(data, folds, seed)):
        with tempfile.TemporaryDirectory(prefix="digits-fold-") as tmp:
            result = train(config, data, Path(tmp) / "fold", verbose=0, split=split)
        scores.append(float(result.history["val_accuracy"].iloc[-1]))
        tune.report({"cv_accuracy": float(np.mean(scores)), "folds_done": k + 1,
                     "seconds": time.perf_counter() - start})


def run_sweep(base: Config, train_csv, out_dir, trials: int, space: dict | None = None,
              folds: int = 3, epochs: int | None = None, address: str | None = None,
              cpus: int = 1, seed: int = 0, log=None) -> SweepResult:
    """Sweep `trials` variants of `base` (fields from `space`, DEFAULT_SPACE if None) on Ray
    Tune and write DIR/results.csv, sweep.png, best-recipe.json."""
    data = load_train_csv(train_csv)
    space = space if space is not None else DEFAULT_SPACE
    check_space(space)
    out_dir = Path(out_dir).resolve()
    from .files import check_writable

    check_writable(out_dir)
    base = base.replace(epochs=epochs)
    from .cluster import cluster_gpus, connect

    ray = connect(address)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard files
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then prints nothing of Tune's
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    gpus = 1 if cluster_gpus(ray) else 0
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base.to_dict(), pixels=data.pixels, labels=data.labels,
                             data_path=str(data.path), sha256=data.sha256, folds=folds,
                             seed=seed, threads=cpus),
        {"cpu": cpus, "gpu": gpus})
    capacity = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
    tuner = tune.Tuner(
        trainable, param_space=_tune_space(space),
        tune_config=tune.TuneConfig(
            metric="cv_accuracy", mode="max", num_samples=trials,
            max_concurrent_trials=capacity,
            search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed)),
            scheduler=ASHAScheduler(time_attr="folds_done", max_t=folds, grace_period=1,
                                    reduction_factor=2)),
        run_config=tune.RunConfig(storage_path=str(out_dir), name="tune", verbose=0,
                                  callbacks=[_progress_callback(trials, folds, log)]))
    grid = tuner.fit()

    rows = []
    for i, result in enumerate(grid):
        metrics = result.metrics or {}
        rows.append({"trial": i + 1, **{k: result.config.get(k) for k in space},
                     "cv_accuracy": metrics.get("cv_accuracy"),
                     "folds_done": metrics.get("folds_done", 0),
                     "stopped_early": metrics.get("folds_done", 0) < folds and not result.error,
                     "seconds": round(metrics.get("seconds", float("nan")), 2),
                     "error": str(result.error).splitlines()[0][:200] if result.error else ""})
    complete = [r for r in rows if r["folds_done"] == folds and r["cv_accuracy"] is not None]
    best = max(complete, key=lambda r: r["cv_accuracy"]) if complete else None
    best_config = None
    if best:
        best_config = base.replace(recipe=f"{base.recipe}-sweep",
                                   **{k: best[k] for k in space})
        write_json_atomic(out_dir / BEST_FILE, {**best_config.to_dict(), "sweep": {
            "cv_accuracy": best["cv_accuracy"], "folds": folds, "trial": best["trial"],
            "trials": trials, "base_recipe": base.recipe, "train_csv": str(data.path),
            "sha256": data.sha256}})
    _write_results(out_dir / RESULTS_FILE, rows)
    _plot(out_dir / PLOT_FILE, rows, best, folds)
    return SweepResult(out_dir, rows, best, best_config)


def _progress_callback(n_trials: int, folds: int, log):
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.numbers, self.done = {}, 0

        def _name(self, trial):
            number = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
            return f"trial {number:02d}/{n_trials}"

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if log:
                log(f"{self._name(trial)}: fold {result['folds_done']}/{folds}, CV accuracy "
                    f"{result['cv_accuracy']:.4f}, {result['seconds']:.0f} s")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            if log:
                folds_done = (trial.last_result or {}).get("folds_done", 0)
                how = "done" if folds_done == folds else f"stopped early after {folds_done} fold(s)"
                log(f"{self._name(trial)}: {how} ({self.done}/{n_trials} trials finished)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            if log:
                log(f"{self._name(trial)}: failed ({self.done}/{n_trials} trials finished)")

    return Progress()


def _write_results(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    write_text_atomic(path, pd.DataFrame(rows).to_csv(index=False))


def _plot(path: Path, rows: list[dict], best: dict | None, folds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for complete, style in ((True, {"color": "tab:blue", "label": f"all {folds} folds"}),
                            (False, {"facecolors": "none", "edgecolors": "tab:gray",
                                     "label": "stopped early (folds so far)"})):
        pts = [r for r in rows if r["cv_accuracy"] is not None
               and (r["folds_done"] == folds) == complete]
        if pts:
            ax.scatter([r["seconds"] for r in pts], [100 * r["cv_accuracy"] for r in pts], **style)
    if best:
        ax.annotate(f"best: trial {best['trial']}", (best["seconds"], 100 * best["cv_accuracy"]),
                    textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("training time of the trial (s, all folds run)")
    ax.set_ylabel(f"{folds}-fold CV accuracy (%)")
    ax.set_title("recipe sweep: cross-validation on the training file only")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
