"""Training history: history.csv and the tutorial's four curves (curves.png)."""

from __future__ import annotations

from pathlib import Path

from .files import atomic_path


def write_history(path, rows: list[dict]) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def plot_curves(history, path, title: str = "") -> Path:
    """Loss and accuracy, training vs validation, per epoch (history: a DataFrame)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = history["epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for ax, metric, label in ((ax_loss, "loss", "loss (categorical cross-entropy)"),
                              (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, history[metric], "o-", color="tab:blue", ms=3, label=f"training {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "o-", color="tab:orange", ms=3,
                    label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    if "val_accuracy" in history:
        best = history["val_accuracy"].idxmax()
        ax_acc.annotate(f"best {history['val_accuracy'][best]:.4f}",
                        (epochs[best], history["val_accuracy"][best]),
                        textcoords="offset points", xytext=(-30, -18), fontsize=8)
    ax_loss.set_yscale("log")
    fig.suptitle(f"Training curves {title}".strip())
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
