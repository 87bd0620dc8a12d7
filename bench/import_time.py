"""Seconds to import Keras with TensorFlow, as every `digits` process that trains or reads a
run directory does, in fresh processes, interleaved between variants of the installed packages.

    .venv/bin/python bench/import_time.py                     # the venv as it is, 8 processes
    .venv/bin/python -m pip install -q --no-deps --target /tmp/mld070 ml_dtypes==0.7.0
    .venv/bin/python bench/import_time.py --variant 0.7.0=/tmp/mld070 --variant installed= \\
        --runs 8

A variant is LABEL=DIR: DIR goes first on PYTHONPATH (packages installed there with `pip
install --target` shadow the venv's); an empty DIR is the venv as it is. Each round starts one
process per variant, in turn, so a machine that slows down or speeds up meanwhile affects all
alike. Prints the machine and versions lines first, then per variant the median, min and max.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import machine_info, print_machine, versions  # noqa: E402

CODE = ("from digit_recognizer.backend import keras; import ml_dtypes, numpy; "
        "print(f'ml_dtypes {ml_dtypes.__version__}, numpy {numpy.__version__}')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--runs", type=int, default=8, help="processes per variant")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"installed": ""}
    print_machine(machine_info(), versions())
    seconds = {label: [] for label in variants}
    seen = {}
    for _ in range(args.runs):
        for label, directory in variants.items():
            env = {**os.environ, "PYTHONPATH": directory} if directory else dict(os.environ)
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                                 text=True, check=True, stdin=subprocess.DEVNULL)
            seconds[label].append(time.perf_counter() - start)
            seen[label] = out.stdout.strip()
    for label, values in seconds.items():
        print(f"{label} ({seen[label]}): median {statistics.median(values):.2f} s, min "
              f"{min(values):.2f}, max {max(values):.2f} ({len(values)} processes)")


if __name__ == "__main__":
    main()
