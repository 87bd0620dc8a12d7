"""Steady training ms/step and prediction img/s of each recipe's network, side by side.

    .venv/bin/python bench/steps.py data/train.csv                   # every one-cycle recipe
    .venv/bin/python bench/steps.py data/train.csv --recipes best,default --batch-norm keras,fused

Each recipe's network (without its augmentation: this measures the network's step, not the
input pipeline) trains one warm-up epoch on `--rows` rows of the CSV, then one timed epoch;
then predicts the same rows twice, the second timed. `--batch-norm keras,fused` builds each
network twice in turn, with Keras's BatchNormalization and with model.FusedBatchNormalization
(the one the recipes use), `--rounds` times, so a machine that drifts affects both alike.
Prints the machine and versions lines first.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
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
        config = get_recipe(name)
        steps = len(x) // config.batch_size
        results = {kind: ([], []) for kind in args.batch_norm.split(",")}
        for _ in range(args.rounds):
            for kind, (train_ms, predict_rate) in results.items():
                model_module.FusedBatchNormalization = layers[kind]  # what build_model uses
                try:
                    keras.utils.set_random_seed(config.seed)
                    model = compile_model(model_module.build_model(
                        config, 33.0, 78.0, with_augmentation=False), config, steps)
                finally:
                    model_module.FusedBatchNormalization = layers["fused"]
                dataset = make_dataset(x, y, config.batch_size, True, config.seed)
                # one untimed call first: tracing, oneDNN primitive creation
                train_ms.append(1e3 * timed(lambda: model.fit(dataset, epochs=1, verbose=0),
                                            repeat=1, warm_up=True) / steps)
                predict_rate.append(len(images) / timed(
                    lambda: model.predict(images, batch_size=1024, verbose=0), repeat=1,
                    warm_up=True))
        for kind, (train_ms, predict_rate) in results.items():
            ms = statistics.median(train_ms)
            print(f"{name:8s} batch norm {kind:5s}: train {ms:6.1f} ms/step "
                  f"({config.batch_size * 1e3 / ms:,.0f} img/s; each round "
                  f"{', '.join(f'{v:.1f}' for v in train_ms)}), predict "
                  f"{statistics.median(predict_rate):,.0f} img/s", flush=True)


if __name__ == "__main__":
    main()
