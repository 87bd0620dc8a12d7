"""`digits` command line: parses arguments, calls the library, prints results.

Bad input (InputError) is one line on stderr and exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import InputError

EXIT_INPUT = 2


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter (CPU feature notes, oneDNN notices) is not for users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_demo_data(args) -> int:
    from .data import write_demo_data

    demo = write_demo_data(args.dir, n_train=args.rows, seed=args.seed, n_test=args.test_rows)
    print(f"wrote {demo.train_csv} ({len(demo.train_indices)} rows), {demo.test_csv} "
          f"({len(demo.test_order)} rows), {demo.answers_csv} (answer key)")
    return 0


def _config_from_args(args, base=None):
    """The recipe named by --recipe (or `base`, else the default) with the options' overrides."""
    from .config import get_recipe

    if args.recipe or base is None:
        base = get_recipe(args.recipe or "default")
    return base.replace(
        epochs=args.epochs, batch_size=args.batch_size, val_fraction=args.val_fraction,
        seed=args.seed, augment=False if getattr(args, "no_augment", False) else None)


def cmd_train(args) -> int:
    from .train import train

    if args.resume:
        if args.train_csv or args.run_dir or args.ensemble or args.add_members:
            raise SystemExit("digits train: --resume RUN takes no TRAIN_CSV, --run-dir, "
                             "--ensemble or --add-members")
        return resume_run(args.resume)
    if not args.run_dir:
        raise SystemExit("digits train: needs --run-dir (or --resume RUN)")
    if args.ensemble or args.add_members:
        return train_ensemble_members(args)
    if args.jobs > 1:
        raise SystemExit("digits train: --jobs J trains ensemble members; add --ensemble N")
    if not args.train_csv:
        raise SystemExit("digits train: needs TRAIN_CSV and --run-dir (or --resume RUN)")
    print_result(train(_config_from_args(args), args.train_csv, args.run_dir))
    return 0


def print_result(result) -> None:
    print(f"best validation accuracy {result.best_val_accuracy:.4f} at epoch {result.best_epoch}"
          f"/{result.epochs_run}, {result.train_seconds:.1f} s; files in {result.run_dir}/")


def resume_run(run_dir: Path) -> int:
    """A single run resumes itself; an ensemble resumes each member that was interrupted."""
    from .ensemble import is_ensemble, members
    from .train import BACKUP_DIR, resume_training

    if not is_ensemble(run_dir):
        print_result(resume_training(run_dir))
        return 0
    stopped = [m for m in members(run_dir)
               if m.status != "complete" and (m.run_dir / BACKUP_DIR).is_dir()]
    if not stopped:
        raise InputError(run_dir, "has no interrupted member to resume")
    for member in stopped:
        print_result(resume_training(member.run_dir))
    return 0


def train_ensemble_members(args) -> int:
    """--ensemble N: a new ensemble of N members; --add-members K: K more (same recipe as
    member 1 unless --recipe says otherwise; same training data)."""
    from .ensemble import ENSEMBLE_FILE, is_ensemble, members, train_members
    from .files import read_json

    existing = members(args.run_dir) if is_ensemble(args.run_dir) else []
    if args.ensemble and args.add_members:
        raise SystemExit("digits train: give --ensemble N (new) or --add-members K, not both")
    if args.ensemble:
        if existing:
            raise InputError(args.run_dir, f"already holds an ensemble of {len(existing)} "
                                           "members; use --add-members K to add more")
        if not args.train_csv:
            raise SystemExit("digits train: --ensemble N needs TRAIN_CSV")
        config, train_csv, count = _config_from_args(args), args.train_csv, args.ensemble
    else:
        if not is_ensemble(args.run_dir):
            raise InputError(args.run_dir, "is not an ensemble (make one with --ensemble N)")
        info = read_json(args.run_dir / ENSEMBLE_FILE)
        first = next((m for m in existing if m.config), None)
        config = _config_from_args(args, first.config if first else None)
        if first and args.seed is None:  # member seeds count on from the first member's
            config = config.replace(seed=first.seed - first.index + 1)
        train_csv, count = args.train_csv or info["data"]["train_csv"], args.add_members
    added = train_members(config, train_csv, args.run_dir, count, jobs=args.jobs)
    for m in added:
        print(f"member {m.index:02d}: recipe '{m.recipe}', seed {m.seed}, validation "
              f"{m.best_val_accuracy:.4f}, {m.train_seconds:.1f} s")
    usable = [m for m in members(args.run_dir) if m.usable]
    print(f"ensemble {args.run_dir}/: {len(usable)} finished members")
    return 0


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def cmd_predict(args) -> int:
    from .predict import predict_csv

    if len(args.inputs) == 1 and _is_csv(args.inputs[0]):
        t = time.perf_counter()
        labels = predict_csv(args.run_dir, args.inputs[0], args.output or Path("submission.csv"),
                             tta=args.tta)
        print(f"wrote {args.output or 'submission.csv'}: {len(labels)} predictions in "
              f"{time.perf_counter() - t:.1f} s")
        return 0
    if any(_is_csv(p) for p in args.inputs):
        raise SystemExit("digits predict: give one test CSV, or image files, not both")
    return predict_image_files(args)


def predict_image_files(args) -> int:
    from .images import save_digit_png
    from .predict import load_run, predict_images, top_k

    run = load_run(args.run_dir)
    digits, probabilities = predict_images(run, args.inputs, tta=args.tta)
    if args.format == "csv":
        print("file,label,probability")
    for path, pixels, probs in zip(args.inputs, digits, probabilities):
        best = top_k(probs)
        if args.format == "csv":
            print(f"{path},{best[0][0]},{best[0][1]:.6f}")
        else:
            others = "  ".join(f"{d}: {p:.1%}" for d, p in best)
            print(f"{path}: {best[0][0]}   ({others})")
        if args.show:
            save_digit_png(pixels, args.show / f"{Path(path).stem}.seen.png")
    if args.show:
        print(f"what the model saw: {args.show}/*.seen.png", file=sys.stderr)
    return 0


def cmd_score(args) -> int:
    from .evaluate import report_submission, score_submission

    score = score_submission(args.submission, args.answers)
    print(f"accuracy {score.accuracy:.4%} ({score.n_images - score.n_errors}/{score.n_images} "
          f"correct, {score.n_errors} errors)")
    if args.report:
        print_metrics(report_submission(args.submission, args.answers, args.report), args.report)
    return 0


def print_metrics(metrics: dict, report_dir) -> None:
    """The short summary: accuracy, errors, log loss, the three most confused pairs."""
    print(f"accuracy     {metrics['accuracy']:.4%}  ({metrics['n_errors']} errors in "
          f"{metrics['n_images']} images)")
    if "log_loss" in metrics:
        print(f"log loss     {metrics['log_loss']:.4f}")
    for i, pair in enumerate(metrics["most_confused"]):
        label = "confused" if i == 0 else ""
        print(f"{label:12s} {pair['true']} taken for {pair['predicted']}: {pair['count']} times")
    print(f"report       {report_dir}/report.html (metrics.json, confusion.png"
          f"{', errors.png, calibration.png' if 'log_loss' in metrics else ''})")


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_run

    report_dir = args.report or args.run_dir / "report"
    print_metrics(evaluate_run(args.run_dir, args.labeled_csv, report_dir, tta=args.tta),
                  report_dir)
    return 0


def cmd_run(args) -> int:
    from .pipeline import run

    config = _config_from_args(args)
    start = time.perf_counter()
    summary = run(config, args.data, args.run_dir, members=args.ensemble, jobs=args.jobs,
                  tta=args.tta)
    total = time.perf_counter() - start
    run_dir = summary.run_dir
    print()
    print(f"== digit-recognizer: recipe '{config.recipe}' ==")
    if summary.created_demo_data:
        print(f"data         {args.data}/ (demo data written from the embedded MNIST copy)")
    else:
        print(f"data         {args.data}/")
    print(f"validation   {summary.best_val_accuracy:.4%} (best epoch, split of train.csv)")
    if summary.score is not None:
        print(f"held-out     {summary.score.accuracy:.4%} accuracy on {summary.score.n_images} "
              f"test images ({summary.score.n_errors} errors)")
    else:
        print("held-out     no answer key (test_labels.csv): upload submission.csv to Kaggle")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    print(f"time         {total:.1f} s in all ({stages})")
    print(f"submission   {summary.submission}")
    if args.ensemble:
        print(f"run files    {run_dir}/ensemble.json, members/NN/ (model.keras, config.json, "
              "history.csv, curves.png)")
    else:
        print(f"run files    {run_dir}/model.keras, config.json, history.csv, curves.png")
    if summary.metrics is None:
        print("report       none: no answer key, and each ensemble member trained on the "
              "others' validation rows")
        return 0
    print(f"report       {summary.report_dir}/report.html (on the "
          f"{'held-out set' if summary.score else 'validation split'})")
    confused = ", ".join(f"{p['true']}->{p['predicted']} ({p['count']})"
                         for p in summary.metrics["most_confused"])
    print(f"confused     {confused or 'nothing'} (true->predicted)")
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    print(f"serving {args.run_dir} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    serve(args.run_dir, host=args.host, port=args.port)
    return 0


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .config import RECIPES

    parser = argparse.ArgumentParser(
        prog="digits", description="Kaggle's Digit Recognizer, end to end, on Keras 3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def training_options(p):
        p.add_argument("--recipe", choices=sorted(RECIPES),
                       help="named configuration (default: 'default'; with --add-members: "
                            "the ensemble's first member's)")
        p.add_argument("--epochs", type=int, help="override the recipe's epochs")
        p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
        p.add_argument("--val-fraction", type=float,
                       help="fraction of the training CSV held out for validation")
        p.add_argument("--seed", type=int, help="random seed (split, init, augmentation)")
        p.add_argument("--no-augment", action="store_true", help="train without augmentation")
        p.add_argument("--ensemble", type=positive_int, metavar="N",
                       help="train N models (seeds SEED..SEED+N-1, each its own validation "
                            "split) into RUN/members/; predictions average them")
        p.add_argument("--jobs", type=positive_int, default=1, metavar="J",
                       help="ensembles: train J members at a time, each in its own process "
                            "with cores/J threads (default 1)")

    def tta_option(p):
        p.add_argument("--tta", action="store_true",
                       help="test-time augmentation: average over the image moved one pixel "
                            "each way and turned +/-8 degrees (7x the inference time)")

    p = sub.add_parser("demo-data", help="write Kaggle-format CSVs from the embedded MNIST")
    p.add_argument("dir", type=Path)
    p.add_argument("--rows", type=int, default=42_000, help="training rows (default 42000)")
    p.add_argument("--test-rows", type=int, help="keep only the first N test rows (default all 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("train", help="train a model into a run directory")
    p.add_argument("train_csv", type=Path, nargs="?")
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue an interrupted run (or an ensemble's interrupted members) "
                        "from the last completed epoch")
    p.add_argument("--add-members", type=positive_int, metavar="K",
                   help="train K more members into the ensemble RUN (its data by default)")
    training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict a test CSV (-> Kaggle submission) or images",
                       description="digits predict RUN TEST_CSV -o submission.csv, or "
                                   "digits predict RUN IMAGE... (PNG, JPEG, any size/polarity)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("inputs", type=Path, nargs="+", metavar="TEST_CSV|IMAGE")
    p.add_argument("-o", "--output", type=Path, help="submission file (default submission.csv)")
    p.add_argument("--show", type=Path, metavar="DIR",
                   help="images: save the 28x28 digit the model saw, as DIR/NAME.seen.png")
    p.add_argument("--format", choices=["text", "csv"], default="text",
                   help="images: 'csv' prints file,label,probability rows")
    tta_option(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="check a submission's format and score it")
    p.add_argument("submission", type=Path)
    p.add_argument("answers", type=Path)
    p.add_argument("--report", type=Path, help="also write confusion matrix and per-class table")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="accuracy report, confusion matrix, worst errors")
    p.add_argument("run_dir", type=Path)
    p.add_argument("labeled_csv", type=Path, help="labeled CSV (Kaggle train.csv format)")
    p.add_argument("--report", type=Path, help="report directory (default RUN/report)")
    tta_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="HTTP API and a drawing page for a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("run", help="the main job: data, train, predict, submission, score")
    p.add_argument("--data", type=Path, default=Path("data"),
                   help="directory with train.csv/test.csv (demo data is written if empty)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    training_options(p)
    tta_option(p)
    p.set_defaults(func=cmd_run)
    return parser


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt  # same clean stop as Ctrl-C: best model and history are kept


def main(argv: list[str] | None = None) -> int:
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return args.func(args)
    except InputError as e:
        if args.debug:
            raise
        print(f"digits: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("digits: interrupted; finished files are kept (`digits train --resume RUN` "
              "continues training)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
