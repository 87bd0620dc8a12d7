"""Steady training ms/step and prediction img/s of each recipe's network, side by side.

    .venv/bin/python bench/steps.py data/train.csv                   # every one-cycle recipe
    .venv/bin/python bench/steps.py data/train.csv --recipes best,default --batch-norm keras,fused
    .venv/bin/python bench/steps.py data/train.csv --recipes default --augment \
        --variant 'none={"augment": false}' --variant as-is='{}' --rounds 4

Each recipe's network (without its augmentation unless `--augment`: then each batch is
augmented in the input pipeline, as `train` does on TensorFlow) trains one warm-up epoch on
`--rows` rows of the CSV, then one timed epoch; then predicts the same rows twice, the second
timed. `--batch-norm keras,fused` builds each network twice in turn, with Keras's
BatchNormalization and with model.FusedBatchNormalization (the one the recipes use);
`--variant NAME=JSON` (repeatable) each time with those Config fields changed. Every
combination is measured once per round, in turn, `--rounds` times, so a machine that drifts
affects all alike. Prints the machine and versions lines first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import machine_info, print_machine, timed, versions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_csv", type=Path)
    parser.add_argument("--recipes", default="quick,default,fast,best")
    parser.add_argument("--batch-norm", default="fused", help="keras, fused or keras,fused")
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--augment", action="store_true",
                        help="each recipe's augmentation in the input pipeline, as training has it")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="Config fields changed for one more measurement (repeatable)")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"": "{}"}
    print_machine(machine_info(), versions())

    import numpy as np

    from digit_recognizer import model as model_module
    from digit_recognizer.backend import keras
    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import load_train_csv
    from digit_recognizer.train import compile_model, make_dataset

    layers = {"keras": keras.layers.BatchNormalization,
              "fused": model_module.FusedBatchNormalization}
    data = load_train_csv(args.train_csv)
    x, y = data.pixels[:args.rows], data.labels[:args.rows]
    images = x.reshape(-1, 28, 28, 1).astype(np.float32)
    for name in args.recipes.split(","):
        configs = {label: dataclasses.replace(get_recipe(name), **json.loads(fields))
                   for label, fields in variants.items()}
        results = {(kind, label): ([], []) for kind in args.batch_norm.split(",")
                   for label in configs}
        for _ in range(args.rounds):
            for (kind, label), (train_ms, predict_rate) in results.items():
                config = configs[label]
                steps = len(x) // config.batch_size
                model_module.FusedBatchNormalization = layers[kind]  # what build_model uses
                try:
                    keras.utils.set_random_seed(config.seed)
                    model = compile_model(model_module.build_model(
                        config, 33.0, 78.0, with_augmentation=False), config, steps)
                finally:
                    model_module.FusedBatchNormalization = layers["fused"]
                augment = (model_module.build_augmentation(config)
                           if args.augment and config.augment else None)
                dataset = make_dataset(x, y, config.batch_size, True, config.seed, augment)
                # one untimed call first: tracing, oneDNN primitive creation
                train_ms.append(1e3 * timed(lambda: model.fit(dataset, epochs=1, verbose=0),
                                            repeat=1, warm_up=True) / steps)
                predict_rate.append(len(images) / timed(
                    lambda: model.predict(images, batch_size=1024, verbose=0), repeat=1,
                    warm_up=True))
        for (kind, label), (train_ms, predict_rate) in results.items():
            ms = statistics.median(train_ms)
            batch = configs[label].batch_size
            print(f"{name:8s} {label + ' ' if label else ''}batch norm {kind:5s}: train "
                  f"{ms:6.1f} ms/step ({batch * 1e3 / ms:,.0f} img/s; each round "
                  f"{', '.join(f'{v:.1f}' for v in train_ms)}), predict "
                  f"{statistics.median(predict_rate):,.0f} img/s", flush=True)


if __name__ == "__main__":
    main()
