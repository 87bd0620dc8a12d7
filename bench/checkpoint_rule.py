"""Which epoch should a run keep? Compared on validation data only, nested.

    .venv/bin/python bench/checkpoint_rule.py default --seeds 5
    .venv/bin/python bench/checkpoint_rule.py quick --seeds 5

For each seed (2, 3, ... or from --first-seed) the recipe trains on its own stratified split of train.csv, as
`digits train` does, and the validation rows' probabilities are kept after every epoch. Those
rows are then cut into two stratified halves. "best" picks the epoch with the highest accuracy
on one half (earliest on ties, as `checkpoint: "best"` does) and is scored on the other half,
both ways round; "last" is the last epoch scored on the same halves. Choosing and scoring on
the same rows would flatter "best"; the halves keep it honest. The held-out test set is never
read. Prints one line per seed and the mean +- sd of each rule.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def nested_scores(correct: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, float]:
    """(best, last): `correct` (epochs, rows) says which validation rows each epoch got right."""
    from sklearn.model_selection import StratifiedKFold

    a, b = next(StratifiedKFold(2, shuffle=True, random_state=seed).split(correct.T, labels))
    best, last = [], []
    for choose, score in ((a, b), (b, a)):
        epoch = int(np.argmax(correct[:, choose].mean(axis=1)))  # argmax: earliest on ties
        best.append(correct[epoch, score].mean())
        last.append(correct[-1, score].mean())
    return float(np.mean(best)), float(np.mean(last))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="a recipe name or recipe .json file")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds (one split each)")
    parser.add_argument("--first-seed", type=int, default=2,
                        help="seeds FIRST, FIRST+1, ... (to add seeds to an earlier comparison)")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    from digit_recognizer.backend import keras
    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import load_train_csv, to_inputs
    from digit_recognizer.train import split_train_val, train

    class ValidationProbabilities(keras.callbacks.Callback):
        def __init__(self, pixels):
            super().__init__()
            self.inputs, self.per_epoch = to_inputs(pixels), []

        def on_epoch_end(self, epoch, logs=None):
            self.per_epoch.append(self.model.predict(self.inputs, batch_size=1024, verbose=0))

    data = load_train_csv(args.data / "train.csv")
    scores = []
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for seed in seeds:
        config = get_recipe(args.recipe).replace(seed=seed)
        split = split_train_val(data, config.val_fraction, seed)
        probabilities = ValidationProbabilities(split.x_val)
        with tempfile.TemporaryDirectory() as run_dir:
            train(config, data, run_dir, callbacks=[probabilities], verbose=0)
        correct = np.stack(probabilities.per_epoch).argmax(axis=-1) == split.y_val
        scores.append(nested_scores(correct, split.y_val, seed))
        print(f"{config.recipe} seed {seed}: per-epoch validation "
              f"{np.round(correct.mean(axis=1), 4).tolist()}; nested: best "
              f"{scores[-1][0]:.4%}, last {scores[-1][1]:.4%}", flush=True)
    best, last = np.array(scores).T
    spread = (lambda x: f" +- {x.std(ddof=1):.2%}") if len(scores) > 1 else (lambda x: "")
    print(f"{args.recipe}, seeds {seeds[0]}-{seeds[-1]}: best {best.mean():.4%}{spread(best)}, "
          f"last {last.mean():.4%}{spread(last)}")


if __name__ == "__main__":
    main()
