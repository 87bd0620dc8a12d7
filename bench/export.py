"""Exports against Keras, side by side: agreement on the held-out set, and cold inference time.

    make bench-export                                   # about 2 minutes on 2 cores
    .venv/bin/python bench/export.py --run bench/results/run-ensemble --tta

For a run directory (default bench/results/run-default; trained with the default recipe first
if missing): export ONNX and LiteRT, predict MNIST's 10,000 held-out images with Keras and with
each export (onnxruntime; LiteRT's interpreter), count agreeing labels and the largest
probability difference. Then time fresh `digits predict` processes, start to exit (median of
3, with their peak memory): one image, and a 28,000-row test CSV (Kaggle's size) to a
submission, from the run directory (Keras) and from the .onnx file (onnxruntime, no
TensorFlow). The web export's size is reported too. Results also go to
bench/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
DIGITS = str(Path(sys.executable).parent / "digits")


# Started from a small process: a child's peak RSS (ru_maxrss) counts its parent's memory at
# fork time, and this benchmark's own process holds TensorFlow and MNIST.
LAUNCHER = ("import json, os, subprocess, sys, time; start = time.perf_counter(); "
            "proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "_, status, usage = os.wait4(proc.pid, 0); "
            "print(json.dumps([time.perf_counter() - start, status, usage.ru_maxrss]))")


def cold_process(args: list[str], repeat: int = 3) -> dict:
    """Median wall seconds and the largest peak RSS (MiB) of `repeat` fresh processes."""
    seconds, peak = [], 0.0
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", LAUNCHER, *args], capture_output=True,
                             text=True, check=True)
        wall, status, max_rss_kib = json.loads(out.stdout)
        if status != 0:
            raise SystemExit(f"{' '.join(args)} failed: {out.stderr}")
        seconds.append(wall)
        peak = max(peak, max_rss_kib / 1024)
    return {"seconds": statistics.median(seconds), "peak_mib": peak}


def agreement(expected, got) -> dict:
    import numpy as np

    return {"same_labels": int((expected.argmax(1) == got.argmax(1)).sum()),
            "max_abs_diff": float(np.abs(expected - got).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "bench" / "results" / "run-default")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--tta", action="store_true", help="export with the TTA views inside")
    args = parser.parse_args()

    import numpy as np

    from bench import machine_info, print_machine, versions
    from digit_recognizer.data import write_test_csv
    from digit_recognizer.demo import load_embedded_mnist
    from digit_recognizer.export import export_run
    from digit_recognizer.images import save_digit_png
    from digit_recognizer.pipeline import find_or_create_data
    from digit_recognizer.predict import load_run, run_proba

    work = ROOT / "bench" / "results" / "export"
    work.mkdir(parents=True, exist_ok=True)
    find_or_create_data(args.data)
    if not args.run.exists():
        print(f"-- training {args.run} (default recipe)", flush=True)
        subprocess.run([DIGITS, "train", str(args.data / "train.csv"), "--run-dir",
                        str(args.run)], check=True, stdout=subprocess.DEVNULL)
    machine, vers = machine_info(), versions()
    import onnxruntime

    vers["onnxruntime"] = onnxruntime.__version__
    mnist = load_embedded_mnist()
    test_x, test_y = mnist["test_pixels"], mnist["test_labels"]

    keras_p = run_proba(load_run(args.run, tta=args.tta), test_x)
    result = {"run": str(args.run), "tta": args.tta, "held_out_images": len(test_x),
              "keras_accuracy": float((keras_p.argmax(1) == test_y).mean()), "exports": {}}
    for fmt, name in (("onnx", "model.onnx"), ("litert", "model.tflite"), ("web", "site")):
        start = time.perf_counter()
        exported = export_run(args.run, fmt, work / name, tta=args.tta)
        entry = {"size_mib": exported.size_bytes / 2**20,
                 "export_seconds": time.perf_counter() - start}
        if fmt == "onnx":
            onnx_p = run_proba(load_run(exported.path), test_x)
            entry.update(agreement(keras_p, onnx_p),
                         accuracy=float((onnx_p.argmax(1) == test_y).mean()))
        elif fmt == "litert":
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(exported.path))
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, (len(test_x), 28, 28, 1))
            interpreter.allocate_tensors()
            interpreter.set_tensor(index, test_x.astype(np.float32)[..., None])
            interpreter.invoke()
            lite_p = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            entry.update(agreement(keras_p, lite_p),
                         accuracy=float((lite_p.argmax(1) == test_y).mean()))
        result["exports"][fmt] = entry

    # model only, in this process, warm: 28,000 images through Keras and through onnxruntime
    from bench import timed
    from digit_recognizer.model import forward_flops

    x28k = mnist["train_pixels"][:28_000]
    keras_run, onnx_run = load_run(args.run, tta=args.tta), load_run(work / "model.onnx")
    flops = sum(forward_flops(m) for m in keras_run.models) * (7 if args.tta else 1)
    result["model_only"] = {
        name: {"seconds": (s := timed(lambda r=run: run_proba(r, x28k), warm_up=True)),
               "images_per_s": len(x28k) / s,
               "share_of_peak": flops * len(x28k) / s / 1e9 / machine["peak_gflops"]}
        for name, run in (("keras", keras_run), ("onnx", onnx_run))}

    image, csv28k = work / "digit.png", work / "test28k.csv"
    save_digit_png(test_x[0], image)
    write_test_csv(csv28k, mnist["train_pixels"][:28_000])
    tta = ["--tta"] if args.tta else []
    onnx = str(work / "model.onnx")
    result["cold"] = {
        "one image": {"keras": cold_process([DIGITS, "predict", str(args.run), str(image), *tta]),
                      "onnx": cold_process([DIGITS, "predict", onnx, str(image)])},
        "28,000-row CSV to submission": {
            "keras": cold_process([DIGITS, "predict", str(args.run), str(csv28k), *tta, "-o",
                                   str(work / "sub-keras.csv")]),
            "onnx": cold_process([DIGITS, "predict", onnx, str(csv28k), "-o",
                                  str(work / "sub-onnx.csv")])},
    }
    same = (work / "sub-keras.csv").read_bytes() == (work / "sub-onnx.csv").read_bytes()
    result.update(machine=machine, versions=vers, same_submission=same,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    (ROOT / "bench" / "results" / "export.json").write_text(json.dumps(result, indent=2))

    print_machine(machine, vers)
    print(f"run: {args.run}{' with TTA' if args.tta else ''}; Keras held-out accuracy "
          f"{result['keras_accuracy']:.2%}\n")
    print("| export | size | labels as Keras (of 10,000) | max prob. difference | accuracy |")
    print("|---|---|---|---|---|")
    for fmt, e in result["exports"].items():
        if "same_labels" in e:
            print(f"| {fmt} | {e['size_mib']:.1f} MiB | {e['same_labels']:,} | "
                  f"{e['max_abs_diff']:.1e} | {e['accuracy']:.2%} |")
        else:
            print(f"| {fmt} (folder: page, model, onnxruntime-web) | {e['size_mib']:.1f} MiB "
                  "| (the onnx model) | | |")
    print("\n| fresh `digits predict` process | Keras (run dir) | onnxruntime (.onnx) | "
          "speed-up |")
    print("|---|---|---|---|")
    for what, pair in result["cold"].items():
        k, o = pair["keras"], pair["onnx"]
        print(f"| {what} | {k['seconds']:.2f} s, {k['peak_mib']:.0f} MiB | {o['seconds']:.2f} s, "
              f"{o['peak_mib']:.0f} MiB | {k['seconds'] / o['seconds']:.1f}x |")
    k, o = result["model_only"]["keras"], result["model_only"]["onnx"]
    print(f"\nmodel only, 28,000 images in this process (warm): Keras {k['images_per_s']:,.0f} "
          f"img/s ({k['share_of_peak']:.0%} of the fp32 matmul rate), onnxruntime "
          f"{o['images_per_s']:,.0f} img/s ({o['share_of_peak']:.0%}): "
          f"{k['seconds'] / o['seconds']:.2f}x")
    print(f"submissions identical: {same}")


if __name__ == "__main__":
    main()
