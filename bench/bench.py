"""Side-by-side benchmark: time to accuracy, throughput, CSV load and inference, on this machine.

    make bench                                  # everything (about 75 minutes on 2 cores; the ensemble is 50)
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
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

CONTENDERS = ["default", "fast", "best", "tutorial", "keras-io", "ensemble"]
SEED = 2


# ---------------------------------------------------------------------------------------------
# Machine


def machine_info() -> dict:
    """CPU model, cores, clock and the fp32 peak assumed from them (printed with every result)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {}
    for line in cpuinfo.splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            fields.setdefault(k, v)
    flags = set(fields.get("flags", "").split())
    cores = os.cpu_count() or 1
    mhz = float(fields.get("cpu MHz", "0") or 0)
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma_units = 2  # two FMA pipes per core on every x86 server core of the last decade
    flops_per_cycle = fma_units * lanes * 2  # an FMA is 2 FLOPs
    peak = cores * mhz * 1e6 * flops_per_cycle
    return {
        "cpu": fields.get("model name", platform.processor()), "cores": cores, "mhz": mhz,
        "simd": "AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE",
        "peak_gflops": peak / 1e9,
        "peak_assumption": f"{cores} cores x {mhz / 1000:.2f} GHz x {flops_per_cycle} fp32 "
                           f"FLOPs/cycle ({fma_units} FMA units x {lanes} lanes x 2)",
        "platform": platform.platform(),
    }


def versions() -> dict:
    from digit_recognizer.train import library_versions

    return library_versions()


# ---------------------------------------------------------------------------------------------
# One contender, in a child process


def held_out_observer(test_x, test_y):
    import keras
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
    import keras

    class TimeCap(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.start > max_seconds:
                self.model.stop_training = True

    return TimeCap()


def train_contender(name: str, data_dir: Path, max_minutes: float) -> dict:
    import keras
    import numpy as np

    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import load_test_csv, load_train_csv, read_submission
    from digit_recognizer.model import build_model, forward_flops
    from digit_recognizer.train import to_inputs, train

    train_data = load_train_csv(data_dir / "train.csv")
    test_x = to_inputs(load_test_csv(data_dir / "test.csv").pixels)
    test_y = read_submission(data_dir / "test_labels.csv")
    observer = held_out_observer(test_x, test_y)
    cap = time_cap(max_minutes * 60)
    if name == "keras-io":
        from keras_io_convnet import (BATCH_SIZE, EPOCHS, build_keras_io_convnet,
                                      compile_keras_io_convnet)

        keras.utils.set_random_seed(SEED)
        model = compile_keras_io_convnet(build_keras_io_convnet())
        x = to_inputs(train_data.pixels)
        y = keras.utils.to_categorical(train_data.labels, 10)
        n_train = int(len(x) * 0.9)
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, validation_split=0.1, verbose=0,
                  callbacks=[observer, cap])
        flops, batch, epochs_planned = forward_flops(model), BATCH_SIZE, EPOCHS
    else:
        config = get_recipe(name).replace(seed=SEED)
        run_dir = ROOT / "bench" / "results" / f"run-{name}"
        train(config, train_data, run_dir, callbacks=[observer, cap], verbose=0)
        n_train = len(train_data) - int(np.ceil(len(train_data) * config.val_fraction))
        flops = forward_flops(build_model(config))
        batch, epochs_planned = config.batch_size, config.epochs
        tta = held_out_with_and_without_tta(run_dir, data_dir)
    epochs = observer.epochs
    # Steady-state epoch time: the median of epochs after the first (which includes tracing).
    durations = np.diff([0.0] + [t for _, t, _ in epochs])
    epoch_seconds = float(np.median(durations[1:] if len(durations) > 1 else durations))
    images_per_s = n_train / epoch_seconds
    return {
        "name": name, "batch_size": batch, "epochs_planned": epochs_planned,
        "epochs_run": len(epochs), "epochs": epochs,
        "time_to_990": next((t for _, t, a in epochs if a >= 0.990), None),
        "time_to_995": next((t for _, t, a in epochs if a >= 0.995), None),
        "final_accuracy": epochs[-1][2], "train_seconds": epochs[-1][1],
        "images_per_s": images_per_s, "mflops_per_image": flops / 1e6,
        "train_gflops": 3 * flops * images_per_s / 1e9,  # forward + backward ~ 3x forward
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "max_minutes": max_minutes,
        **(tta if name != "keras-io" else {}),
    }


def held_out_with_and_without_tta(run_dir: Path, data_dir: Path) -> dict:
    """Held-out accuracy of a run's selected model (best validation epoch), plain and with
    test-time augmentation: what `digits evaluate RUN` and `--tta` report."""
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
    from digit_recognizer.ensemble import members, train_members
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

    from digit_recognizer.data import (CACHE_SUFFIX, load_embedded_mnist, load_test_csv,
                                       load_train_csv, write_test_csv)
    from digit_recognizer.predict import load_run, predict_csv, predict_proba
    from digit_recognizer.train import to_inputs

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
        result = train_contender(args.child, args.data, args.max_minutes)
    Path(args.out).write_text(json.dumps(result))


def run_child(kind: str, args) -> dict:
    out = ROOT / "bench" / "results" / f"{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--child", kind, "--data", str(args.data), "--out",
           str(out), "--max-minutes", str(args.max_minutes), "--members", str(args.members),
           "--jobs", str(args.jobs), "--ensemble-minutes", str(args.ensemble_minutes)]
    print(f"-- {kind}", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def fmt_time(t, cap):
    return f"{t:.1f} s" if t is not None else f"not in {cap:g} min"


def render(machine, vers, results, io) -> str:
    peak = machine["peak_gflops"]
    lines = [
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['simd']}; "
        f"fp32 peak {peak:.0f} GFLOP/s assumed = {machine['peak_assumption']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + f"; seed {SEED}",
        "",
        "| contender | batch | epochs | to 99.0% | to 99.5% | final held-out | train img/s "
        "| MFLOP/img | GFLOP/s | % of peak | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        if r["name"] == "ensemble":
            continue
        lines.append(
            f"| {r['name']} | {r['batch_size']} | {r['epochs_run']}/{r['epochs_planned']} "
            f"| {fmt_time(r['time_to_990'], r['max_minutes'])} "
            f"| {fmt_time(r['time_to_995'], r['max_minutes'])} | {r['final_accuracy']:.2%} "
            f"| {r['images_per_s']:.0f} | {r['mflops_per_image']:.1f} | {r['train_gflops']:.0f} "
            f"| {r['train_gflops'] / peak:.0%} | {r['peak_rss_mb']:.0f} MB |")
    ours = results.get("default")
    if ours and ours["time_to_990"]:
        lines.append("")
        for name, r in results.items():
            if name in ("default", "fast", "best", "ensemble"):  # ours, not baselines
                continue
            if r["time_to_990"]:
                lines.append(f"time to 99.0%: default / {name} = "
                             f"{ours['time_to_990'] / r['time_to_990']:.3f} "
                             f"({r['time_to_990'] / ours['time_to_990']:.1f}x faster)")
            else:
                lines.append(f"time to 99.0%: {name} did not reach it in "
                             f"{r['train_seconds']:.0f} s; default took "
                             f"{ours['time_to_990']:.1f} s")
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
    recipe selects (best validation epoch), plain and with test-time augmentation."""
    rows = []
    for name in ("default", "fast", "best"):
        r = results.get(name)
        if r and "selected_accuracy" in r:
            rows.append(f"| {name} | 1 | {r['train_seconds']:.0f} s "
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
    parser.add_argument("--max-minutes", type=float, default=10.0,
                        help="cap on each contender's training wall time")
    parser.add_argument("--skip-io", action="store_true", help="skip CSV and inference timing")
    parser.add_argument("--members", type=int, default=12,
                        help="ensemble: members of the `best` recipe to train (default 12)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="ensemble: members trained at a time, one process each (default 2)")
    parser.add_argument("--ensemble-minutes", type=float, default=75.0,
                        help="ensemble: no new round of members after this many minutes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from digit_recognizer.pipeline import find_or_create_data

    find_or_create_data(args.data)
    machine, vers = machine_info(), versions()
    print(f"machine: {json.dumps(machine)}\nversions: {json.dumps(vers)}\nseed: {SEED}", flush=True)
    results = {name: run_child(name, args) for name in args.only.split(",")}
    io = None
    if not args.skip_io and (ROOT / "bench" / "results" / "run-default" / "model.keras").exists():
        io = run_child("io", args)
    table = render(machine, vers, results, io)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (ROOT / "bench" / "results" / "latest.json").write_text(json.dumps(
        {"date": stamp, "machine": machine, "versions": vers, "seed": SEED,
         "results": results, "io": io}, indent=2))
    print(f"\n## Results ({stamp})\n\n{table}")


if __name__ == "__main__":
    main()
