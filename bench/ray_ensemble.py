"""An ensemble of 4, three ways, wall time each: sequential, `--jobs 2` (local processes) and
`--ray` (a local Ray started by digits), all from the same train.csv with the same seeds.

    make bench-ray                     # about 8 minutes on 2 cores (default recipe)
    .venv/bin/python bench/ray_ensemble.py --recipe quick --members 4

Each is a fresh `digits train ... --ensemble N` process timed from start to exit (Ray's start-up
included); the held-out accuracy of each ensemble is printed beside it (MNIST's official test
images, observed only). Results also go to bench/results/ray-ensemble.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
DIGITS = str(Path(sys.executable).parent / "digits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--members", type=int, default=4)
    args = parser.parse_args()

    from bench import machine_info, print_machine, versions
    from digit_recognizer.demo import load_embedded_mnist
    from digit_recognizer.pipeline import find_or_create_data
    from digit_recognizer.predict import load_run, run_proba

    find_or_create_data(args.data)
    machine, vers = machine_info(), versions()
    vers["ray"] = __import__("ray").__version__
    mnist = load_embedded_mnist()
    ways = {"sequential": [], "--jobs 2": ["--jobs", "2"], "--ray (local)": ["--ray"]}
    results = {}
    for name, extra in ways.items():
        run_dir = ROOT / "bench" / "results" / f"ray-ensemble-{name.strip('-').split()[0]}"
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"-- {name}", flush=True)
        start = time.perf_counter()
        subprocess.run([DIGITS, "train", str(args.data / "train.csv"), "--run-dir", str(run_dir),
                        "--recipe", args.recipe, "--ensemble", str(args.members), *extra],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        probs = run_proba(load_run(run_dir), mnist["test_pixels"])
        results[name] = {"wall_seconds": wall,
                         "held_out": float((probs.argmax(1) == mnist["test_labels"]).mean())}
    base = results["sequential"]["wall_seconds"]
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
           "versions": vers, "recipe": args.recipe, "members": args.members, "seeds":
           list(range(2, 2 + args.members)), "results": results}
    (ROOT / "bench" / "results" / "ray-ensemble.json").write_text(json.dumps(out, indent=2))
    print_machine(machine, vers)
    print(f"ensemble of {args.members} x recipe '{args.recipe}', seeds "
          f"{out['seeds'][0]}-{out['seeds'][-1]}\n")
    print("| how | wall time | vs sequential | held-out accuracy |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['wall_seconds']:.1f} s | {base / r['wall_seconds']:.2f}x | "
              f"{r['held_out']:.2%} |")


if __name__ == "__main__":
    main()
