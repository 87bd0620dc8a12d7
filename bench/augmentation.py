"""What each part of a recipe's training augmentation costs, per batch, on this machine.

    .venv/bin/python bench/augmentation.py                      # default, batch 128
    .venv/bin/python bench/augmentation.py --recipe best --rounds 5

Times, in one process and in turn (`--rounds` times, so a drifting machine affects all alike),
one call on a batch of random raw images in a tf.function, training mode: the recipe's whole
augmentation (model.build_augmentation), each of its layers alone, the same rotation layer with
a zero factor, and TensorFlow's resampling kernel (ImageProjectiveTransformV3, bilinear) with
the identity matrix; and the pen layer and the whole augmentation once more with the thicker
strokes as Keras's max-pooling (stride 1, "same"), as model._thicker computed them before
2026-12-03. Prints ms per batch: median over the rounds of each round's mean over `--calls`
calls. The training step shares the same cores (bench/steps.py --augment times both).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import machine_info, print_machine, versions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print_machine(machine_info(), versions())

    import numpy as np

    from digit_recognizer.backend import keras
    from digit_recognizer.config import get_recipe
    from digit_recognizer import model as model_module
    from digit_recognizer.model import build_augmentation
    import tensorflow as tf

    config = get_recipe(args.recipe)
    whole = build_augmentation(config)
    parts = {"whole augmentation": whole}
    parts.update({f"  {layer.name}": layer for layer in whole.layers})
    parts["  rotation by 0 degrees"] = keras.layers.RandomRotation(
        0.0, fill_mode="constant", fill_value=0.0, seed=config.seed)
    images = tf.constant(np.random.default_rng(0).integers(
        0, 256, (args.batch_size, 28, 28, 1)).astype(np.float32))
    identity = tf.constant([[1, 0, 0, 0, 1, 0, 0, 0]] * args.batch_size, dtype=tf.float32)

    def kernel(x):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=identity, output_shape=[28, 28], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT")

    calls = {name: tf.function(lambda x, layer=layer: layer(x, training=True))
             for name, layer in parts.items()}
    shifted_maxima = model_module._thicker
    model_module._thicker = lambda x, px: keras.ops.nn.max_pool(x, px + 1, strides=1,
                                                                padding="same")
    try:  # traced here, with max-pooling (the pens look their styles up when traced)
        pooled = build_augmentation(config)
        pooled_parts = {"whole, thicker strokes by max-pooling": pooled}
        if config.pen > 0:
            pooled_parts["  random_pen, thicker strokes by max-pooling"] = pooled.layers[0]
        for name, layer in pooled_parts.items():
            calls[name] = tf.function(lambda x, layer=layer: layer(x, training=True))
            calls[name](images)
    finally:
        model_module._thicker = shifted_maxima
    calls["  resampling kernel alone, identity matrix"] = tf.function(kernel)
    ms = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, fn in calls.items():
            for _ in range(10):  # tracing, first calls
                fn(images)
            start = time.perf_counter()
            for _ in range(args.calls):
                fn(images)
            ms[name].append(1e3 * (time.perf_counter() - start) / args.calls)
    print(f"{args.recipe}: augmentation per batch of {args.batch_size} "
          f"(median of {args.rounds} rounds of {args.calls} calls)")
    for name, values in ms.items():
        print(f"{name:44s} {statistics.median(values):6.2f} ms  "
              f"(rounds {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
