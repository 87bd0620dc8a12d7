"""`digits` command line: parses arguments and hands them to commands.py (which calls the
library and prints).

Bad input (InputError) is one line on stderr and exit code 2; a usage error is argparse's
`usage: ...` / `digits CMD: error: ...`, exit code 2; `--debug` shows tracebacks and
TensorFlow's own start-up lines. Nothing heavy is imported before the input is checked.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .commands import (cmd_demo_data, cmd_evaluate, cmd_export, cmd_info, cmd_predict, cmd_run,
                       cmd_score, cmd_serve, cmd_sweep, cmd_train)
from .config import CHOICES, RECIPE_SUMMARIES, RECIPES
from .errors import EXIT_INTERRUPTED, InputError, show_warnings_as_lines

EXIT_INPUT = 2


# ---------------------------------------------------------------------------------------------
# The parser: every number is range-checked here (exit 2, one line)


def int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            within = f"{low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"must be {within}, not {value}")
        return value
    return parse


def fraction_below_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {text}")
    return value


def recipe_name_or_file(text: str) -> str:
    if text in RECIPES or text.lower().endswith(".json"):
        return text  # a file is read (and checked) with the rest of the input
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from "
                                     f"{', '.join(RECIPES)}, or give a recipe .json file)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option with a default shows it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" not in text and action.option_strings
                and action.default not in (None, False, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


RECIPE_HELP = "recipes (measured on 2-core machines; bench/README.md):\n" + "\n".join(
    f"  {name:9s} {RECIPE_SUMMARIES.get(name, '')}" for name in RECIPES)


RUN_OR_ONNX = ("a run directory from `digits train`, or a .onnx file from `digits export` "
               "(runs on onnxruntime, without TensorFlow)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digits", formatter_class=HelpFormatter,
        description="Kaggle's Digit Recognizer, end to end, on Keras 3.",
        epilog=_examples("digits run                     # demo data, train, submission, score",
                         "digits COMMAND --help          # each command's options"))
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and TensorFlow's own log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, examples, **kwargs):
        p = sub.add_parser(name, help=help, description=kwargs.pop("description", help),
                           formatter_class=HelpFormatter, epilog=examples, **kwargs)
        p.set_defaults(parser=p)
        return p

    def training_options(p):
        p.add_argument("--recipe", type=recipe_name_or_file, metavar="NAME|FILE.json",
                       help=f"named configuration ({', '.join(RECIPES)}; see below) or a recipe "
                            "file such as a sweep's best-recipe.json (default: 'default')")
        p.add_argument("--epochs", type=int_at_least(1), metavar="N",
                       help="override the recipe's epochs")
        p.add_argument("--batch-size", type=int_at_least(1), metavar="N",
                       help="override the recipe's batch size")
        p.add_argument("--val-fraction", type=fraction_below_one, metavar="F",
                       help="fraction of the training CSV held out for validation, 0 to <1 "
                            "(default: the recipe's, 0.1)")
        p.add_argument("--seed", type=int_at_least(0), metavar="S",
                       help="random seed: split, initialisation, augmentation (default: 2)")
        p.add_argument("--no-augment", action="store_true", help="train without augmentation")
        p.add_argument("--checkpoint", choices=CHOICES["checkpoint"],
                       help="the epoch model.keras keeps: the best by validation accuracy, or "
                            "the last (default: the recipe's; last for the one-cycle recipes, "
                            "best for tutorial)")
        p.add_argument("--precision", choices=CHOICES["precision"],
                       help="the network's arithmetic in training: float32, mixed bfloat16, or "
                            "auto (bfloat16 where the CPU computes it natively, as `digits "
                            "info` says); the saved model computes in float32 either way "
                            "(default: the recipe's; auto for best, float32 for the others)")
        p.add_argument("--distill", type=Path, metavar="TEACHER_RUN",
                       help="distillation: train on the probabilities that TEACHER_RUN (e.g. an "
                            "ensemble) gives each training row instead of the labels")
        p.add_argument("--ensemble", type=int_at_least(1), metavar="N",
                       help="train N models (seeds S..S+N-1, each its own validation split) "
                            "into RUN/members/; predictions average them")
        p.add_argument("--jobs", type=int_at_least(1), default=1, metavar="J",
                       help="ensembles: train J members at a time, each in its own process "
                            "with cores/J threads")

    def ray_options(p):
        p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="ensembles: train each member as a Ray task; alone, on a local Ray "
                            "started on this machine; with HOST:PORT (or RAY_ADDRESS set), on "
                            "that cluster")
        p.add_argument("--cpus-per-member", type=int_at_least(1), default=1, metavar="C",
                       help="with --ray: CPUs each member asks Ray for (its thread count)")

    def tta_option(p, recipe_decides: str):
        p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                       help="test-time augmentation: average over the image moved one pixel "
                            "each way and turned +/-8 degrees (7x the inference time); "
                            f"default: {recipe_decides} as the run's recipe says (on for "
                            "`default`, chosen on validation)")

    def reframe_option(p):
        p.add_argument("--reframe", action=argparse.BooleanOptionalAction, default=True,
                       help="CSV rows whose digit is not framed as MNIST frames its digits "
                            "(the ink's longer side about 20 px, centred by mass; unlike "
                            "digits scanned to fill the frame, smaller or off-centre) are "
                            "reframed that way first; MNIST's own rows are read as they are")

    p = command("demo-data", "write Kaggle-format CSVs from the embedded MNIST copy",
                _examples("digits demo-data data/",
                          "digits demo-data /tmp/small --rows 1000 --test-rows 200"))
    p.add_argument("dir", type=Path, help="directory for train.csv, test.csv, test_labels.csv")
    p.add_argument("--rows", type=int_at_least(1, 60_000), default=42_000,
                   help="training rows drawn from MNIST's 60,000 training images")
    p.add_argument("--test-rows", type=int_at_least(1, 10_000), metavar="N",
                   help="keep only the first N of the 10,000 shuffled test images (default: all)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of the row draw and the test order")
    p.set_defaults(func=cmd_demo_data)

    p = command("train", "train a model (or an ensemble) into a run directory",
                _examples("digits train data/train.csv --run-dir runs/mine",
                          "digits train data/train.csv --run-dir runs/ens --recipe best "
                          "--ensemble 4 --jobs 2",
                          "digits train --run-dir runs/ens --add-members 2",
                          "digits train --resume runs/mine",
                          "digits train data/train.csv --run-dir runs/ens --ensemble 8 --ray "
                          "head-node:6379") + "\n\n" + RECIPE_HELP)
    p.add_argument("train_csv", type=Path, nargs="?", metavar="TRAIN_CSV",
                   help="labeled CSV in Kaggle's train.csv format (.csv or .csv.gz)")
    p.add_argument("--run-dir", type=Path, metavar="RUN",
                   help="directory for the model, config, history and curves (required)")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue an interrupted run (or an ensemble's interrupted members) "
                        "from the last completed epoch")
    p.add_argument("--add-members", type=int_at_least(1), metavar="K",
                   help="train K more members into the ensemble RUN (its data and member 1's "
                        "recipe unless given)")
    training_options(p)
    ray_options(p)
    p.set_defaults(func=cmd_train)

    p = command("predict", "predict a test CSV (-> Kaggle submission) or image files",
                _examples("digits predict runs/default data/test.csv -o submission.csv",
                          "digits predict runs/default photo.jpg drawing.png --show seen/",
                          "digits predict model.onnx data/test.csv   # no TensorFlow needed"),
                description="Predict a test CSV in Kaggle's format and write a submission, "
                            "or read digits from images (PNG, JPEG; any size, either polarity)")
    p.add_argument("run_dir", type=Path, metavar="RUN", help=RUN_OR_ONNX)
    p.add_argument("inputs", type=Path, nargs="+", metavar="TEST_CSV|IMAGE",
                   help="one test CSV (pixel0..pixel783), or image files")
    p.add_argument("-o", "--output", type=Path,
                   help="submission file, for a test CSV (default: submission.csv)")
    p.add_argument("--show", type=Path, metavar="DIR",
                   help="save the 28x28 digit the model saw: images as DIR/NAME.seen.png, "
                        "a CSV's reframed rows as DIR/IMAGEID.seen.png")
    p.add_argument("--format", choices=["text", "csv"], default="text",
                   help="images: 'csv' prints file,label,probability rows")
    tta_option(p, "for a test CSV and images,")
    reframe_option(p)
    p.set_defaults(func=cmd_predict)

    p = command("score", "check a submission's format and score it against an answer key",
                _examples("digits score runs/default/submission.csv data/test_labels.csv",
                          "digits score submission.csv data/test_labels.csv --report rep/"))
    p.add_argument("submission", type=Path, help="ImageId,Label file to check and score")
    p.add_argument("answers", type=Path, help="the answer key, also ImageId,Label")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="also write metrics.json, confusion.png and report.html to DIR")
    p.set_defaults(func=cmd_score)

    p = command("evaluate", "a run's accuracy report: metrics, confusion matrix, worst errors",
                _examples("digits evaluate runs/default data/test.csv --labels "
                          "data/test_labels.csv",
                          "digits evaluate runs/default labeled.csv --report rep/ --tta"))
    p.add_argument("run_dir", type=Path, metavar="RUN", help=RUN_OR_ONNX)
    p.add_argument("data_csv", type=Path, metavar="CSV",
                   help="labeled CSV (train.csv format), or a test CSV with --labels")
    p.add_argument("--labels", type=Path, metavar="ANSWERS",
                   help="answer key (ImageId,Label) for an unlabeled test CSV")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="report directory (default: RUN/report)")
    tta_option(p, "for the report,")
    reframe_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("serve", "HTTP API and a drawing page for a trained run",
                _examples("digits serve runs/default                # http://127.0.0.1:8000/",
                          "digits serve runs/default --port 8080"))
    p.add_argument("run_dir", type=Path, metavar="RUN", help=RUN_OR_ONNX)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 127.0.0.1 is this machine only")
    p.add_argument("--port", type=int_at_least(1, 65535), default=8000, help="TCP port")
    tta_option(p, "for every request,")
    p.set_defaults(func=cmd_serve)

    p = command("sweep", "search recipe settings by k-fold cross-validation, on Ray Tune",
                _examples("digits sweep data/train.csv --run-dir sweeps/quick --trials 12",
                          "digits sweep data/train.csv --run-dir sweeps/s --recipe default "
                          "--space space.json --folds 5 --ray head-node:6379",
                          "digits train data/train.csv --run-dir runs/tuned --recipe "
                          "sweeps/quick/best-recipe.json"),
                description="Try variants of a recipe (fields drawn from a search space by "
                            "Optuna), score each by k-fold cross-validation on the training "
                            "file only, stop the weak ones after their first folds (ASHA), and "
                            "write DIR/results.csv, DIR/sweep.png and DIR/best-recipe.json. "
                            "Runs on a local Ray unless --ray ADDRESS names a cluster.")
    p.add_argument("train_csv", type=Path, metavar="TRAIN_CSV", help="labeled CSV")
    p.add_argument("--run-dir", type=Path, required=True, metavar="DIR",
                   help="folder for results.csv, sweep.png, best-recipe.json and tune/")
    p.add_argument("--recipe", type=recipe_name_or_file, default="quick",
                   metavar="NAME|FILE.json", help="the recipe whose fields are varied")
    p.add_argument("--trials", type=int_at_least(1), default=8, metavar="N",
                   help="variants to try")
    p.add_argument("--space", type=Path, metavar="FILE",
                   help='search space, JSON or YAML: {"width": {"choice": [16, 32]}, '
                        '"learning_rate": {"loguniform": [0.001, 0.01]}, ...} (default: '
                        "learning_rate, width, dropout, label_smoothing, batch_size)")
    p.add_argument("--folds", type=int_at_least(2), default=3, metavar="K",
                   help="cross-validation folds per trial")
    p.add_argument("--epochs", type=int_at_least(1), metavar="E",
                   help="epochs per fold (default: the recipe's)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of the folds and of Optuna's proposals")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="a Ray cluster's HOST:PORT (or RAY_ADDRESS); default: a local Ray")
    p.add_argument("--cpus-per-trial", type=int_at_least(1), default=1, metavar="C",
                   help="CPUs each trial asks Ray for (its thread count)")
    p.set_defaults(func=cmd_sweep)

    p = command("info", "versions, CPU, threads and the devices training would use",
                _examples("digits info"))
    p.set_defaults(func=cmd_info)

    p = command("export", "export a run as one file or folder to run without TensorFlow",
                _examples("digits export runs/default -o model.onnx",
                          "digits export runs/ens --tta -o ens-tta.onnx   # members and views "
                          "in one graph",
                          "digits export runs/default --format litert -o model.tflite",
                          "digits export runs/default --format web -o site/   # then: python "
                          "-m http.server -d site"),
                description="Export a run (a single model or a whole ensemble) as one "
                            "inference graph: raw pixels 0-255 in, probabilities out. 'onnx' "
                            "runs with `digits predict/evaluate/serve model.onnx` on "
                            "onnxruntime; 'web' is a static folder (drawing page, model, "
                            "onnxruntime-web) that predicts in the browser.")
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a run directory from `digits train`")
    p.add_argument("--format", choices=["onnx", "litert", "saved_model", "web"], default="onnx",
                   help="onnx: a .onnx file; litert: a .tflite file; saved_model: a TensorFlow "
                        "SavedModel folder; web: a static site folder")
    p.add_argument("-o", "--output", type=Path, metavar="PATH",
                   help="file or folder to write (default: model.onnx, model.tflite, "
                        "saved_model/, site/)")
    p.add_argument("--tta", action="store_true",
                   help="average the 7 test-time views inside the graph (7x the inference "
                        "time; about 15 MB more)")
    p.set_defaults(func=cmd_export)

    p = command("run", "the main job: data, train, predict, submission, score, report",
                _examples("digits run                                # demo data in data/",
                          "digits run --data ~/kaggle/digit-recognizer --recipe fast",
                          "digits run --recipe best --ensemble 2 --jobs 2 --tta")
                + "\n\n" + RECIPE_HELP)
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="directory with Kaggle's train.csv and test.csv (default: data/, where "
                        "MNIST demo data is written if it has none)")
    p.add_argument("--demo-data", action="store_true",
                   help="write the demo data into --data DIR if it has no CSVs")
    p.add_argument("--run-dir", type=Path, default=Path("runs/default"), metavar="RUN",
                   help="directory for the run's files and submission.csv")
    training_options(p)
    tta_option(p, "for the submission,")
    reframe_option(p)
    p.set_defaults(func=cmd_run)
    return parser


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt  # same clean stop as Ctrl-C: kept model and history stay


def _interrupted(args) -> int:
    if sys.stdout.isatty() or sys.stderr.isatty():
        print(file=sys.stderr)  # end the progress bar's line: the message gets its own
    run_dir = getattr(args, "resume", None) or getattr(args, "run_dir", None)
    hint = (f" (`digits train --resume {run_dir}` continues training)"
            if args.command in ("train", "run") and run_dir else "")
    print(f"digits: interrupted; finished files are kept{hint}", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug_before = os.environ.get("DIGITS_DEBUG")
    if args.debug:
        os.environ["DIGITS_DEBUG"] = "1"  # backend.py (here and in member processes): unfiltered
    show_warnings_as_lines()
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
        return _interrupted(args)
    finally:  # main() called from Python (tests, notebooks) leaves the environment as it was
        if debug_before is None:
            os.environ.pop("DIGITS_DEBUG", None)
        else:
            os.environ["DIGITS_DEBUG"] = debug_before


def run_as_command() -> None:
    """The `digits` console script: `main()`, then exit without tearing the interpreter down.

    After a command that loaded TensorFlow, Python's final clean-up (module teardown, garbage,
    the C++ libraries' state) took 1.5-1.7 s on this project's 2-core machines, 22% of a
    `digits predict` on one image (answer printed at 5.6 s, exit at 7.1-7.6 s). The process
    ends anyway: once the atexit handlers have run (Ray's shutdown, multiprocessing's
    clean-up) and stdout/stderr are flushed, `os._exit` skips the rest, as multiprocessing's
    own child processes do. A command that leaves other threads running exits normally, and
    an exception out of `main()` is Python's as ever."""
    code = main()
    code = 0 if code is None else int(code)
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon
           for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what sys.exit would run first, in the same (reverse) order
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`digits ... | head`) or stream
            pass
    os._exit(code)


if __name__ == "__main__":
    run_as_command()
