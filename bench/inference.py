"""Model-only inference variants, side by side, on 28,000 images (Kaggle's test size).

    .venv/bin/python bench/inference.py bench/results/run-default

Each variant runs the same trained model; prints images/s, the speed-up over plain
`model.predict(batch_size=1024)`, the largest probability difference and how many labels differ.
Variants: our predict_proba (predict_on_batch) at batch 256/1024/4096, a plain tf.function,
the same with XLA (jit_compile=True), and the model rebuilt under Keras's mixed_bfloat16
policy (bf16 compute on AVX-512 BF16 CPUs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from digit_recognizer.tf_env import set_tensorflow_defaults

set_tensorflow_defaults()  # before TensorFlow's first import
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    from digit_recognizer.backend import keras
    import numpy as np
    import tensorflow as tf

    from bench import machine_info, timed, versions
    from digit_recognizer.config import Config
    from digit_recognizer.demo import load_embedded_mnist
    from digit_recognizer.model import build_model, forward_flops
    from digit_recognizer.predict import load_run, predict_proba

    run = load_run(sys.argv[1] if len(sys.argv) > 1 else "bench/results/run-default")
    model = run.models[0]
    pixels = load_embedded_mnist()["train_pixels"][:28_000]
    x = pixels.astype(np.float32).reshape(-1, 28, 28, 1)
    reference = model.predict(x, batch_size=1024, verbose=0)

    def batched(fn, batch=1024):
        return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])

    variants = {"model.predict, batch 1024": lambda: model.predict(x, batch_size=1024, verbose=0)}
    for batch in (256, 1024, 4096):
        variants[f"predict_proba, batch {batch}"] = lambda b=batch: predict_proba(model, pixels, b)
    for jit in (False, True):
        fn = tf.function(lambda t: model(t, training=False), jit_compile=jit)
        variants[f"tf.function, jit_compile={jit}"] = lambda f=fn: batched(f)
    config, stats = Config.from_dict(run.configs[0]["config"]), run.configs[0]["preprocessing"]
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16 = build_model(config, stats["pixel_mean"], stats["pixel_std"])
    keras.mixed_precision.set_global_policy("float32")
    bf16.set_weights(model.get_weights())
    variants["mixed_bfloat16, predict_proba 1024"] = lambda: predict_proba(bf16, pixels, 1024)

    machine = machine_info()
    flops = forward_flops(model)
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['simd']}, fp32 peak "
          f"{machine['peak_gflops']:.0f} GFLOP/s assumed ({machine['peak_assumption']})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    print(f"model: {run.run_dir} ({flops / 1e6:.1f} forward MFLOP/image), {len(x)} images\n")
    print("| variant | img/s | vs model.predict | GFLOP/s | % of peak | max abs diff | labels differing |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, fn in variants.items():
        seconds = timed(fn, warm_up=True)  # warm-up: tracing, oneDNN primitive creation
        probabilities = np.asarray(fn(), dtype=np.float32)
        base = base or seconds
        gflops = flops * len(x) / seconds / 1e9
        print(f"| {name} | {len(x) / seconds:.0f} | {base / seconds:.2f}x | {gflops:.0f} "
              f"| {gflops / machine['peak_gflops']:.0%} "
              f"| {np.abs(probabilities - reference).max():.1e} "
              f"| {int((probabilities.argmax(1) != reference.argmax(1)).sum())} |", flush=True)


if __name__ == "__main__":
    main()
