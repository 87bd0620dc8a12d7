"""Side-by-side benchmark: time to accuracy, throughput, CSV load and inference, on this machine.

    make bench                                  # everything (about 2 hours on 2 cores; the ensemble is 1)
    .venv/bin/python bench/bench.py --only default,keras-io --max-minutes 5

Each contender trains in its own process (clean memory peak, no shared TF state) from the same
42,000-row train.csv, and is scored on the held-out 10,000 MNIST test images after every epoch
by a callback that only observes: its time is excluded from the clock and nothing it sees is fed
back (no selection, no early stopping). Results go to stdout and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

CONTENDERS = ["quick", "default", "fast", "best", "tutorial", "keras-io", "ensemble"]
SEED = 2  # the first seed; --seeds N trains seeds 2..N+1


# ---------------------------------------------------------------------------------------------
# Machine


def machine_info() -> dict:
    """CPU model, cores and the fp32 rate this machine measures on a large matrix product
    (printed with every result; throughput is reported as a share of it)."""
    from digit_recognizer.info import cpu_fields

    fields = cpu_fields()
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name", platform.processor()), "cores": os.cpu_count() or 1,
        "cpu_family": fields.get("cpu family"), "model": fields.get("model"),
        "simd": "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE",
        **measured_matmul_gflops(),
        "platform": platform.platform(),
    }


def measured_matmul_gflops(n: int = 4096, repeat: int = 5) -> dict:
    """fp32 GFLOP/s of an n x n matrix product, best of `repeat`, with NumPy's BLAS and with
    TensorFlow (oneDNN): the machine's practical peak, measured rather than assumed. The
    higher of the two is the peak that training throughput is compared with. Where the CPU
    computes bfloat16 natively (backend.native_bfloat16; recipes with precision "auto" train in
    it there), also TensorFlow's bfloat16 rate on the same matrices, the rate a bfloat16
    training is compared with too; None elsewhere."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2 * n ** 3
    numpy_rate = flops / timed(lambda: a @ b, repeat=repeat, warm_up=True) / 1e9
    from digit_recognizer.backend import keras, native_bfloat16  # noqa: F401  (TF, quietly)
    import tensorflow as tf

    def tf_rate(x, y):
        return flops / timed(lambda: tf.linalg.matmul(x, y).numpy(), repeat=repeat,
                             warm_up=True) / 1e9

    ta, tb = tf.constant(a), tf.constant(b)
    fp32_rate = tf_rate(ta, tb)
    return {"matmul_n": n, "numpy_sgemm_gflops": numpy_rate, "tf_sgemm_gflops": fp32_rate,
            "peak_gflops": max(numpy_rate, fp32_rate),
            "bf16_matmul_gflops": (tf_rate(tf.cast(ta, tf.bfloat16), tf.cast(tb, tf.bfloat16))
                                   if native_bfloat16() else None)}


def print_machine(machine: dict, vers: dict) -> None:
    """The two lines every benchmark result starts with: the machine and the versions."""
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, fp32 matmul "
          f"{machine['peak_gflops']:.0f} GFLOP/s measured")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))


def versions() -> dict:
    from digit_recognizer.train import library_versions

    return library_versions()


# ---------------------------------------------------------------------------------------------
# One contender, in a child process


def held_out_observer(test_x, test_y):
    from digit_recognizer.backend import keras
    import numpy as np

    class HeldOutObserver(keras.callbacks.Callback):
        """Scores the held-out set at each epoch end; its own time is kept off the clock."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.excluded = 0.0
            self.epochs = []  # (epoch, train seconds so far, held-out accuracy)

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            elapsed = now - self.start - self.excluded
            probs = np.concatenate([np.asarray(self.model.predict_on_batch(test_x[i:i + 2000]))
                                    for i in range(0, len(test_x), 2000)])
            accuracy = float((probs.argmax(1) == test_y).mean())
            self.epochs.append((epoch + 1, elapsed, accuracy))
            self.excluded += time.perf_counter() - now
            print(f"  epoch {epoch + 1}: {elapsed:7.1f} s  held-out {accuracy:.4f}", flush=True)

    return HeldOutObserver()


def time_cap(max_seconds: float):
    from digit_recognizer.backend import keras

    class TimeCap(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.start > max_seconds:
                self.model.stop_training = True

    return TimeCap()


def train_contender(name: str, data_dir: Path, max_minutes: float, seed: int = SEED) -> dict:
    from digit_recognizer.backend import keras
    import numpy as np

    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import load_test_csv, load_train_csv, read_submission
    from digit_recognizer.model import build_model, forward_flops, resolve_precision
    from digit_recognizer.data import to_inputs
    from digit_recognizer.train import train

    train_data = load_train_csv(data_dir / "train.csv")
    test_x = to_inputs(load_test_csv(data_dir / "test.csv").pixels)
    test_y = read_submission(data_dir / "test_labels.csv")
    observer = held_out_observer(test_x, test_y)
    cap = time_cap(max_minutes * 60)
    if name == "keras-io":
        from keras_io_convnet import (BATCH_SIZE, EPOCHS, build_keras_io_convnet,
                                      compile_keras_io_convnet)

        keras.utils.set_random_seed(seed)
        model = compile_keras_io_convnet(build_keras_io_convnet())
        x = to_inputs(train_data.pixels)
        y = keras.utils.to_categorical(train_data.labels, 10)
        n_train = int(len(x) * 0.9)
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, validation_split=0.1, verbose=0,
                  callbacks=[observer, cap])
        flops, batch, epochs_planned = forward_flops(model), BATCH_SIZE, EPOCHS
    else:
        config = get_recipe(name).replace(seed=seed)
        run_dir = ROOT / "bench" / "results" / f"run-{name}"
        train(config, train_data, run_dir, callbacks=[observer, cap], verbose=0)
        n_train = len(train_data) - int(np.ceil(len(train_data) * config.val_fraction))
        flops = forward_flops(build_model(config))
        batch, epochs_planned = config.batch_size, config.epochs
        precision = resolve_precision(config).precision  # as train() resolved it
        tta = held_out_with_and_without_tta(run_dir, data_dir)
    epochs = observer.epochs
    # Steady-state epoch time: the median of epochs after the first (which includes tracing).
    durations = np.diff([0.0] + [t for _, t, _ in epochs])
    epoch_seconds = float(np.median(durations[1:] if len(durations) > 1 else durations))
    images_per_s = n_train / epoch_seconds
    return {
        "name": name, "seed": seed, "batch_size": batch, "epochs_planned": epochs_planned,
        "epochs_run": len(epochs), "epochs": epochs,
        "time_to_990": next((t for _, t, a in epochs if a >= 0.990), None),
        "time_to_995": next((t for _, t, a in epochs if a >= 0.995), None),
        "time_to_9965": next((t for _, t, a in epochs if a >= 0.9965), None),
        "final_accuracy": epochs[-1][2], "train_seconds": epochs[-1][1],
        "images_per_s": images_per_s, "mflops_per_image": flops / 1e6,
        "train_gflops": 3 * flops * images_per_s / 1e9,  # forward + backward ~ 3x forward
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_minutes": max_minutes,
        "precision": precision if name != "keras-io" else "float32",
        **(tta if name != "keras-io" else {}),
    }


def held_out_with_and_without_tta(run_dir: Path, data_dir: Path) -> dict:
    """Held-out accuracy of a run's selected model (the kept epoch: config.checkpoint), plain
    and with test-time augmentation: what `digits evaluate RUN` and `--tta` report."""
    from digit_recognizer.data import load_test_csv, read_submission
    from digit_recognizer.evaluate import accuracy
    from digit_recognizer.predict import load_run, tta_views

    model = load_run(run_dir).models[0]
    truth = read_submission(data_dir / "test_labels.csv")
    plain, tta = plain_and_tta_proba(model, tta_views(load_test_csv(data_dir / "test.csv").pixels))
    return {"selected_accuracy": accuracy(plain.argmax(1), truth),
            "selected_accuracy_tta": accuracy(tta.argmax(1), truth)}


def plain_and_tta_proba(model, views):
    """One model's probabilities on the images themselves (views[0], the identity view) and
    averaged over all TTA views, predicting each view once."""
    import numpy as np

    from digit_recognizer.predict import predict_proba

    per_view = [predict_proba(model, view) for view in views]
    return per_view[0], np.mean(per_view, axis=0)


def train_ensemble_contender(data_dir: Path, n_members: int, jobs: int,
                             max_minutes: float) -> dict:
    """Members of the `best` recipe, `jobs` at a time (as `digits train --ensemble N --jobs J`);
    after each round, the held-out accuracy of every member alone and of the ensemble so far,
    plain and with TTA. Scoring is off the clock and feeds nothing back."""
    import shutil

    import numpy as np

    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import load_test_csv, read_submission
    from digit_recognizer.ensemble import train_members
    from digit_recognizer.rundir import members
    from digit_recognizer.evaluate import accuracy
    from digit_recognizer.predict import load_model_dir, tta_views

    config = get_recipe("best").replace(seed=SEED)
    run_dir = ROOT / "bench" / "results" / "run-ensemble"
    shutil.rmtree(run_dir, ignore_errors=True)
    pixels = load_test_csv(data_dir / "test.csv").pixels
    truth = read_submission(data_dir / "test_labels.csv")
    views = tta_views(pixels)
    plain, tta, singles, rounds, clock = [], [], [], [], 0.0
    while len(plain) < n_members and clock < max_minutes * 60:
        start = time.perf_counter()
        count = min(jobs, n_members - len(plain))
        train_members(config, data_dir / "train.csv", run_dir, count, jobs=count, verbose=0)
        clock += time.perf_counter() - start
        for member in members(run_dir)[len(plain):]:
            model, _ = load_model_dir(member.run_dir)
            member_plain, member_tta = plain_and_tta_proba(model, views)
            plain.append(member_plain)
            tta.append(member_tta)
            singles.append({"seed": member.seed, "train_seconds": member.train_seconds,
                            "accuracy": accuracy(member_plain.argmax(1), truth),
                            "accuracy_tta": accuracy(member_tta.argmax(1), truth)})
        rounds.append({
            "members": len(plain), "train_seconds": clock,
            "accuracy": accuracy(np.mean(plain, axis=0).argmax(1), truth),
            "accuracy_tta": accuracy(np.mean(tta, axis=0).argmax(1), truth)})
        print(f"  {len(plain)} members: {clock:7.1f} s  held-out {rounds[-1]['accuracy']:.4f}"
              f"  with TTA {rounds[-1]['accuracy_tta']:.4f}", flush=True)
    return {"name": "ensemble", "recipe": config.recipe, "jobs": jobs, "rounds": rounds,
            "members": singles, "max_minutes": max_minutes,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---------------------------------------------------------------------------------------------
# CSV load and inference, in a child process


def timed(fn, repeat: int = 3, warm_up: bool = False) -> float:
    """Best wall time of `repeat` calls, in seconds (after one untimed call with `warm_up`)."""
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_io(data_dir: Path, run_dir: Path, work: Path) -> dict:
    import numpy as np
    import pandas as pd

    from digit_recognizer.demo import load_embedded_mnist
    from digit_recognizer.data import (CACHE_SUFFIX, load_test_csv,
                                       load_train_csv, write_test_csv)
    from digit_recognizer.predict import load_run, predict_csv, predict_proba
    from digit_recognizer.data import to_inputs

    work.mkdir(parents=True, exist_ok=True)
    test28k = work / "test28k.csv"
    write_test_csv(test28k, load_embedded_mnist()["train_pixels"][:28_000])  # Kaggle's size
    train_csv = data_dir / "train.csv"
    out = {}

    for label, path, loader in (("train.csv (42k)", train_csv, load_train_csv),
                                ("test.csv (28k)", test28k, load_test_csv)):
        cache = path.with_name(path.name + CACHE_SUFFIX)

        def cold():
            cache.unlink(missing_ok=True)
            loader(path)

        out[label] = {"pandas_read_csv": timed(lambda: pd.read_csv(path)),
                      "cold": timed(cold), "cached": timed(lambda: loader(path))}

    model = load_run(run_dir).models[0]
    x = load_test_csv(test28k).pixels
    inputs = to_inputs(x)
    ours = predict_proba(model, x)
    plain = model.predict(inputs, batch_size=1024, verbose=0)
    out["inference"] = {
        "rows": len(x),
        "model_predict_batch1024_s": timed(lambda: model.predict(inputs, batch_size=1024,
                                                                     verbose=0)),
        "predict_proba_s": timed(lambda: predict_proba(model, x)),
        "max_abs_diff": float(np.abs(ours - plain).max()),
        "same_labels": bool((ours.argmax(1) == plain.argmax(1)).all()),
        "predict_csv_in_process_s": timed(lambda: predict_csv(run_dir, test28k,
                                                              work / "submission.csv")),
    }
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "digits"), "predict", str(run_dir),
                    str(test28k), "-o", str(work / "submission-cli.csv")], check=True,
                   stdout=subprocess.DEVNULL)
    out["inference"]["digits_predict_cli_s"] = time.perf_counter() - t
    return out


# ---------------------------------------------------------------------------------------------
# Orchestration and the table


def child(args) -> None:
    if args.child == "io":
        result = measure_io(args.data, ROOT / "bench" / "results" / "run-default",
                            ROOT / "bench" / "results" / "io")
    elif args.child == "ensemble":
        result = train_ensemble_contender(args.data, args.members, args.jobs,
                                          args.ensemble_minutes)
    else:
        result = train_contender(args.child, args.data, args.max_minutes, args.seed)
    Path(args.out).write_text(json.dumps(result))


def run_child(kind: str, args, seed: int = SEED) -> dict:
    out = ROOT / "bench" / "results" / f"{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--child", kind, "--data", str(args.data), "--out",
           str(out), "--max-minutes", str(args.max_minutes), "--members", str(args.members),
           "--jobs", str(args.jobs), "--ensemble-minutes", str(args.ensemble_minutes),
           "--seed", str(seed)]
    print(f"-- {kind}" + (f", seed {seed}" if kind not in ("io", "ensemble") else ""), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def run_contender(name: str, args) -> dict:
    """A training contender over `args.seeds` seeds (baselines and slow recipes: one), each in
    its own process; the per-seed results and their mean +- sd."""
    if name in ("io", "ensemble"):
        return run_child(name, args)
    seeds = args.seeds if name in ("quick", "default") else 1
    return aggregate([run_child(name, args, SEED + k) for k in range(seeds)])


def aggregate(runs: list[dict]) -> dict:
    import numpy as np

    def mean(key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return float(np.mean(values)) if len(values) == len(runs) else None

    final = np.array([r["final_accuracy"] for r in runs])
    return {**runs[0], "runs": runs, "seeds": [r["seed"] for r in runs],
            "final_accuracy": float(final.mean()),
            "final_sd": float(final.std(ddof=1)) if len(runs) > 1 else None,
            **{k: mean(k) for k in ("time_to_990", "time_to_995", "time_to_9965",
                                    "train_seconds", "images_per_s", "train_gflops",
                                    "selected_accuracy", "selected_accuracy_tta")},
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def time_digits_run(recipe: str, data_dir: Path) -> dict:
    """`digits run --recipe R` as a user runs it: process start to printed summary (Python and
    TensorFlow start-up, CSV load, training, prediction, held-out score and report)."""
    run_dir = ROOT / "bench" / "results" / f"e2e-{recipe}"
    print(f"-- digits run --recipe {recipe}", flush=True)
    start = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).parent / "digits"), "run", "--data",
                          str(data_dir), "--run-dir", str(run_dir), "--recipe", recipe],
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    held_out = next((line.split()[1] for line in out.stdout.splitlines()
                     if line.startswith("held-out")), "?")
    # "time  21.0 s in all (data 0.0 s, load 0.3 s, train 18.9 s, ...)": where the time went
    # (train includes importing Keras; the rest of `seconds` is Python starting the CLI)
    stages = dict(re.findall(r"(\w+) ([\d.]+) s",
                             next((line.split("(", 1)[-1] for line in out.stdout.splitlines()
                                   if line.startswith("time")), "")))
    return {"recipe": recipe, "seconds": seconds, "held_out": held_out,
            "stages": {k: float(v) for k, v in stages.items()}}


def fmt_time(t, cap):
    return f"{t:.1f} s" if t is not None else f"not in {cap:g} min"


def render(machine, vers, results, io, e2e=None) -> str:
    peak = machine["peak_gflops"]
    lines = [
        f"machine: {machine['cpu']} (family {machine['cpu_family']}, model {machine['model']}), "
        f"{machine['cores']} cores, {machine['simd']}; measured fp32 matmul "
        f"({machine['matmul_n']}^2): NumPy {machine['numpy_sgemm_gflops']:.0f} GFLOP/s, "
        f"TensorFlow {machine['tf_sgemm_gflops']:.0f} GFLOP/s"
        + (f"; bfloat16 matmul (TensorFlow) {machine['bf16_matmul_gflops']:.0f} GFLOP/s"
           if machine.get("bf16_matmul_gflops") else ""),
        "versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "held-out = MNIST's official 10,000 test images, observed after each epoch (off the "
        "clock); every time is training wall time unless stated",
        "",
        "| contender | seeds | batch | epochs | to 99.0% | to 99.5% | to 99.65% "
        "| final held-out (mean +- sd) | train img/s | MFLOP/img | GFLOP/s | % of matmul peak "
        "| precision | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        if r["name"] == "ensemble":
            continue
        sd = f" +- {r['final_sd']:.2%}" if r.get("final_sd") is not None else ""
        seeds = ",".join(map(str, r.get("seeds", [r.get("seed", SEED)])))
        lines.append(
            f"| {r['name']} | {seeds} | {r['batch_size']} | {r['epochs_run']}/{r['epochs_planned']} "
            f"| {fmt_time(r['time_to_990'], r['max_minutes'])} "
            f"| {fmt_time(r['time_to_995'], r['max_minutes'])} "
            f"| {fmt_time(r.get('time_to_9965'), r['max_minutes'])} "
            f"| {r['final_accuracy']:.2%}{sd} "
            f"| {r['images_per_s']:.0f} | {r['mflops_per_image']:.1f} | {r['train_gflops']:.0f} "
            f"| {r['train_gflops'] / peak:.0%} | {r.get('precision', 'float32')} "
            f"| {r['peak_rss_mb']:.0f} MB |")
    bf16_peak = machine.get("bf16_matmul_gflops")
    bf16 = [r for r in results.values() if r.get("precision") == "mixed_bfloat16"]
    if bf16 and bf16_peak:
        lines += ["", "trained in mixed bfloat16 (the % above is of the float32 matmul rate):"]
        lines += [f"- {r['name']}: {r['train_gflops']:.0f} GFLOP/s = "
                  f"{r['train_gflops'] / bf16_peak:.0%} of the measured bfloat16 matmul rate "
                  f"({bf16_peak:.0f} GFLOP/s)" for r in bf16]
    base = results.get("keras-io")
    if base and base["time_to_990"]:
        lines += ["", f"ratios to keras-io mnist_convnet's time to 99.0% held-out "
                      f"({base['time_to_990']:.1f} s, this run):"]
        for name, r in results.items():
            if name in ("keras-io", "ensemble"):
                continue
            if r["time_to_990"]:
                lines.append(f"- {name}: training to 99.0% {r['time_to_990']:.1f} s = "
                             f"{r['time_to_990'] / base['time_to_990']:.3f} of the baseline")
            else:
                lines.append(f"- {name}: not every seed reached 99.0%")
        for run in (e2e or {}).values():
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in run.get("stages", {}).items())
            lines.append(f"- `digits run --recipe {run['recipe']}` end to end {run['seconds']:.1f} s"
                         f" (held-out {run['held_out']}) = "
                         f"{run['seconds'] / base['time_to_990']:.3f} of the baseline"
                         + (f" (its stages: {stages})" if stages else ""))
    lines += accuracy_versus_time(results)
    if io:
        lines += ["", "| CSV | pandas.read_csv | ours, cold | ours, cached |", "|---|---|---|---|"]
        for label in ("train.csv (42k)", "test.csv (28k)"):
            r = io[label]
            lines.append(f"| {label} | {r['pandas_read_csv']:.2f} s | {r['cold']:.2f} s "
                         f"| {r['cached']:.2f} s |")
        inf = io["inference"]
        n = inf["rows"]
        lines += [
            "",
            f"inference on {n} rows (default model): model.predict(batch 1024) "
            f"{n / inf['model_predict_batch1024_s']:.0f} img/s; predict_proba "
            f"{n / inf['predict_proba_s']:.0f} img/s "
            f"({inf['model_predict_batch1024_s'] / inf['predict_proba_s']:.2f}x, same labels: "
            f"{inf['same_labels']}, max |diff| {inf['max_abs_diff']:.1e}); CSV -> submission "
            f"{inf['predict_csv_in_process_s']:.2f} s in process, "
            f"{inf['digits_predict_cli_s']:.2f} s as `digits predict` (incl. Python/TF start-up)",
        ]
    return "\n".join(lines)


def accuracy_versus_time(results: dict) -> list[str]:
    """The trade-off table: training wall time against held-out accuracy of the model each
    recipe selects (the kept epoch: config.checkpoint), plain and with test-time augmentation."""
    rows = []
    for name in ("quick", "default", "fast", "best"):
        r = results.get(name)
        if r and "selected_accuracy" in r:
            # One model per seed; with several seeds each cell is their mean.
            seeds = r.get("seeds", [r.get("seed", SEED)])
            models = "1" if len(seeds) == 1 else f"1 (mean of seeds {','.join(map(str, seeds))})"
            rows.append(f"| {name} | {models} | {r['train_seconds']:.0f} s "
                        f"| {r['selected_accuracy']:.2%} | {r['selected_accuracy_tta']:.2%} |")
    ensemble = results.get("ensemble")
    for r in ensemble["rounds"] if ensemble else []:
        rows.append(f"| ensemble of `{ensemble['recipe']}` ({ensemble['jobs']} at a time) "
                    f"| {r['members']} | {r['train_seconds'] / 60:.1f} min "
                    f"| {r['accuracy']:.2%} | {r['accuracy_tta']:.2%} |")
    if not rows:
        return []
    lines = ["", "| recipe | models | training wall time | held-out | held-out with TTA |",
             "|---|---|---|---|---|", *rows]
    if ensemble and len(ensemble["members"]) >= 2:
        import numpy as np

        for key, label in (("accuracy", "plain"), ("accuracy_tta", "with TTA")):
            acc = np.array([m[key] for m in ensemble["members"]])
            lines.append(f"`{ensemble['recipe']}` alone over {len(acc)} seeds ({label}): mean "
                         f"{acc.mean():.2%}, std {acc.std(ddof=1):.2%}, min {acc.min():.2%}, "
                         f"max {acc.max():.2%}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--only", default=",".join(CONTENDERS),
                        help=f"comma-separated subset of {','.join(CONTENDERS)}")
    parser.add_argument("--max-minutes", type=float, default=15.0,
                        help="cap on each contender's training wall time (15: `best`'s limit "
                             "in issue #14; its 24 epochs take ~12 min on 2 cores)")
    parser.add_argument("--skip-io", action="store_true", help="skip CSV and inference timing")
    parser.add_argument("--members", type=int, default=6,
                        help="ensemble: members of the `best` recipe to train (default 6: "
                             "ensembles of the earlier `best` saturated by 2-6 members)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="ensemble: members trained at a time, one process each (default 2)")
    parser.add_argument("--ensemble-minutes", type=float, default=75.0,
                        help="ensemble: no new round of members after this many minutes")
    parser.add_argument("--seeds", type=int, default=3,
                        help="quick and default: seeds to train (2, 3, ...); others train seed 2")
    parser.add_argument("--e2e", default="quick,default",
                        help="recipes to time as `digits run --recipe R`, start to summary "
                             "('' for none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from digit_recognizer.pipeline import find_or_create_data

    find_or_create_data(args.data)
    machine, vers = machine_info(), versions()
    print(f"machine: {json.dumps(machine)}\nversions: {json.dumps(vers)}", flush=True)
    results = {name: run_contender(name, args) for name in args.only.split(",")}
    e2e = {recipe: time_digits_run(recipe, args.data)
           for recipe in filter(None, args.e2e.split(","))}
    io = None
    if not args.skip_io and (ROOT / "bench" / "results" / "run-default" / "model.keras").exists():
        io = run_child("io", args)
    table = render(machine, vers, results, io, e2e)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (ROOT / "bench" / "results" / "latest.json").write_text(json.dumps(
        {"date": stamp, "machine": machine, "versions": vers, "results": results,
         "end_to_end": e2e, "io": io}, indent=2))
    print(f"\n## Results ({stamp})\n\n{table}")


if __name__ == "__main__":
    main()
