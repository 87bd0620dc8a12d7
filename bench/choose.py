"""Choose recipe settings on validation data only: repeated seeded splits of train.csv.

    .venv/bin/python bench/choose.py default '{"epochs": 3}' --seeds 3
    .venv/bin/python bench/choose.py '{"architecture": "quick", "width": 24, "epochs": 2}'

Each seed trains on its own stratified 90/10 split of train.csv (the recipe's val_fraction) and
reports validation accuracy after every epoch and the training time. The held-out test set is
never read here: this is the tool that recipe choices are made with (bench/README.md states
the protocol); bench.py only observes the held-out accuracy of what was chosen.
Prints one JSON line per seed and a summary: mean +- sd of the last epoch's validation
accuracy, of the selected (best-validation) epoch's, and of the training seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe_or_overrides", nargs="+",
                        help="a recipe name and/or JSON of Config fields (default recipe)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 2, 3, ... (one split each)")
    parser.add_argument("--first-seed", type=int, default=2, metavar="S",
                        help="seeds S, S+1, ... instead (more seeds after a first look)")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    from digit_recognizer.config import check_choices, get_recipe
    from digit_recognizer.data import load_train_csv
    from digit_recognizer.train import train

    import numpy as np

    recipe, overrides = "default", {}
    for arg in args.recipe_or_overrides:
        if arg.lstrip().startswith("{"):
            overrides.update(json.loads(arg))
        else:
            recipe = arg
    try:  # a mistyped recipe or override fails here, not after minutes of training
        check_choices(get_recipe(recipe).replace(**overrides))
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    data = load_train_csv(args.data / "train.csv")
    last, selected, seconds = [], [], []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        config = get_recipe(recipe).replace(seed=seed, **overrides)
        start = time.perf_counter()
        result = train(config, data, ROOT / "bench" / "results" / "choose", verbose=0)
        wall = time.perf_counter() - start
        history = result.history
        last.append(float(history["val_accuracy"].iloc[-1]))
        selected.append(result.best_val_accuracy)
        seconds.append(float(history["seconds"].sum()))
        print(json.dumps({"seed": seed, "val_accuracy": [round(v, 4) for v in
                                                         history["val_accuracy"]],
                          "epoch_seconds": [round(v, 1) for v in history["seconds"]],
                          "wall_seconds": round(wall, 1)}), flush=True)
    fmt = lambda xs: f"{np.mean(xs):.4f} +- {np.std(xs, ddof=1) if len(xs) > 1 else 0:.4f}"
    print(f"{recipe} {json.dumps(overrides)}: validation last epoch {fmt(last)}, selected "
          f"epoch {fmt(selected)}, training {np.mean(seconds):.1f} s ({args.seeds} seeds)",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
