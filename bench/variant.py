"""Try a recipe variant: train it and print held-out accuracy after every epoch.

    .venv/bin/python bench/variant.py default '{"epochs": 3}'
    .venv/bin/python bench/variant.py fast '{"epochs": 24, "dropout": 0.25}' --threads 1

The held-out observer is the benchmark's (off the clock, feeds nothing back). Prints one JSON
line: the config, the epoch chosen by validation, and the held-out accuracy per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from digit_recognizer.tf_env import set_tensorflow_defaults

set_tensorflow_defaults()  # before TensorFlow's first import
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON of Config fields")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all)")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "bench" / "results" / "variant")
    args = parser.parse_args()
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from bench import SEED, held_out_observer, versions
    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import load_test_csv, load_train_csv, read_submission
    from digit_recognizer.data import to_inputs
    from digit_recognizer.train import train

    config = get_recipe(args.recipe).replace(seed=SEED, **json.loads(args.overrides))
    observer = held_out_observer(to_inputs(load_test_csv(args.data / "test.csv").pixels),
                                 read_submission(args.data / "test_labels.csv"))
    result = train(config, load_train_csv(args.data / "train.csv"), args.run_dir,
                   callbacks=[observer], verbose=0)
    print(json.dumps({"config": config.to_dict(), "versions": versions(),
                      "selected_epoch": result.best_epoch, "epochs": observer.epochs}))


if __name__ == "__main__":
    main()
