"""What each `digits` command does: call the library, print the results (cli.py parses)."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

from .cluster import train_members_on_ray
from .config import get_recipe
from .demo import write_demo_data
from .ensemble import base_config, is_ensemble, members, resume, train_members
from .errors import InputError
from .evaluate import evaluate_run, report_submission, score_submission
from .export import export_run
from .images import NoDigitFound, find_digits, save_digit_png
from .info import machine_info
from .pipeline import run
from .predict import answer_digits, load_run, predict_csv, top_k
from .rundir import training_data_of
from .serve import check_port_free, create_app, serve
from .sweep import load_space, run_sweep
from .train import train

EXIT_NO_DIGIT = 1  # predict on images: none of them held a digit


def log(*parts) -> None:
    """A progress line, flushed so that it reaches a pipe or log file at once. A module-level
    function, not partial(print): Ray Tune pickles the sweep's progress callback with it, and
    a partial holds `print` itself, which no longer pickles once a Ray component has replaced
    builtins.print (seen in CI: "Can't pickle <built-in function print>")."""
    print(*parts, flush=True)


def cmd_demo_data(args) -> int:
    demo = write_demo_data(args.dir, n_train=args.rows, seed=args.seed, n_test=args.test_rows)
    print(f"wrote {demo.train_csv} ({len(demo.train_indices)} rows), {demo.test_csv} "
          f"({len(demo.test_order)} rows), {demo.answers_csv} (answer key)")
    return 0


def _config_from_args(args, base=None):
    """The recipe named by --recipe (or `base`, else the default) with the options' overrides."""
    if args.recipe or base is None:
        base = get_recipe(args.recipe or "default")
    return base.replace(
        epochs=args.epochs, batch_size=args.batch_size, val_fraction=args.val_fraction,
        seed=args.seed, augment=False if getattr(args, "no_augment", False) else None,
        checkpoint=getattr(args, "checkpoint", None),
        precision=getattr(args, "precision", None),
        teacher=str(args.distill) if getattr(args, "distill", None) else None)


def cmd_train(args) -> int:
    if args.resume:
        if args.train_csv or args.run_dir or args.ensemble or args.add_members:
            args.parser.error("--resume RUN takes no TRAIN_CSV, --run-dir, --ensemble or "
                              "--add-members")
        for result in resume(args.resume, ray_address=args.ray or None,
                             use_ray=args.ray is not None, cpus=args.cpus_per_member, log=log):
            print_result(result)
        return 0
    if not args.run_dir:
        args.parser.error("needs --run-dir RUN (or --resume RUN)")
    if args.ensemble and args.add_members:
        args.parser.error("give --ensemble N (a new ensemble) or --add-members K, not both")
    if args.ensemble or args.add_members:
        return train_ensemble_members(args)
    if args.jobs > 1 or args.ray is not None:
        args.parser.error(f"{'--jobs J' if args.jobs > 1 else '--ray'} trains ensemble members; "
                          "add --ensemble N")
    if not args.train_csv:
        args.parser.error("needs TRAIN_CSV and --run-dir RUN (or --resume RUN)")
    print_result(train(_config_from_args(args), args.train_csv, args.run_dir))
    return 0


def print_result(result) -> None:
    what = ("validation accuracy" if result.monitor == "val_accuracy"
            else "training accuracy (no validation split)")
    print(f"kept epoch {result.best_epoch}/{result.epochs_run}: {what} "
          f"{result.best_accuracy:.4f}, {result.train_seconds:.1f} s; files in {result.run_dir}/")


def train_ensemble_members(args) -> int:
    """--ensemble N: a new ensemble of N members; --add-members K: K more (same recipe and seed
    sequence as member 1 unless options say otherwise; same training data)."""
    existing = members(args.run_dir) if is_ensemble(args.run_dir) else []
    if args.ensemble:
        if existing:
            raise InputError(args.run_dir, f"already holds an ensemble of {len(existing)} "
                                           "members; use --add-members K to add more")
        if not args.train_csv:
            args.parser.error("--ensemble N needs TRAIN_CSV")
        config, train_csv, count = _config_from_args(args), args.train_csv, args.ensemble
    else:
        if not is_ensemble(args.run_dir):
            raise InputError(args.run_dir, "is not an ensemble (make one with --ensemble N)")
        config = _config_from_args(args, base_config(args.run_dir))
        train_csv = args.train_csv or training_data_of(args.run_dir)["train_csv"]
        count = args.add_members
    if args.ray is not None:
        if args.jobs > 1:
            args.parser.error("--jobs J runs members as local processes; with --ray, Ray "
                              "places them (--cpus-per-member C sets each one's share)")
        added = train_members_on_ray(config, train_csv, args.run_dir, count,
                                     address=args.ray or None, cpus=args.cpus_per_member, log=log)
    else:
        added = train_members(config, train_csv, args.run_dir, count, jobs=args.jobs, log=log)
    for m in added:
        validation = (f"validation {m.best_val_accuracy:.4f}" if m.best_val_accuracy is not None
                      else "no validation split")
        print(f"member {m.index:02d}: recipe '{m.recipe}', seed {m.seed}, {validation}, "
              f"{m.train_seconds:.1f} s")
    usable = [m for m in members(args.run_dir) if m.usable]
    print(f"ensemble {args.run_dir}/: {len(usable)} finished members")
    return 0


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def cmd_predict(args) -> int:
    if len(args.inputs) == 1 and _is_csv(args.inputs[0]):
        output = args.output or Path("submission.csv")
        t = time.perf_counter()
        result = predict_csv(args.run_dir, args.inputs[0], output, tta=args.tta,
                             reframe=args.reframe)
        print(f"wrote {output}: {len(result.labels)} predictions in "
              f"{time.perf_counter() - t:.1f} s")
        print_reframed(result.reframed, len(result.labels))
        if args.show:  # what the model saw where it differs from the row: the reframed ones
            for image_id, pixels in zip(result.reframed_ids, result.reframed_pixels):
                save_digit_png(pixels, args.show / f"{image_id}.seen.png")
            print(f"what the model saw: {args.show}/IMAGEID.seen.png for the "
                  f"{result.reframed} reframed rows", file=sys.stderr)
        return 0
    if any(_is_csv(p) for p in args.inputs):
        args.parser.error("give one test CSV, or image files, not both")
    if args.output:
        args.parser.error("-o/--output is for a test CSV; images print their labels "
                          "(--format csv for a table)")
    return predict_image_files(args)


def predict_image_files(args) -> int:
    """One answer per image: its digit, or "no digit found" and why (no ink, or far from every
    digit the model knows). Exit 0 if any image held a digit, 1 if none did."""
    found = find_digits(args.inputs)  # every image is read and checked before the model loads
    digits = [d for d in found if not isinstance(d, NoDigitFound)]
    # the recipe's test-time views unless --tta/--no-tta says otherwise, as for a CSV and
    # `digits serve` (an exported file: as it was exported)
    answers = iter(answer_digits(load_run(args.run_dir, args.tta), np.stack(digits))
                   if digits else [])
    table = csv.writer(sys.stdout, lineterminator="\n") if args.format == "csv" else None
    if table:
        table.writerow(["file", "label", "probability", "reason"])
    any_digit = False
    for path, digit, name in zip(args.inputs, found, seen_names(args.inputs)):
        answer = None if isinstance(digit, NoDigitFound) else next(answers)
        if answer is None or answer.label is None:
            reason = digit.reason if answer is None else answer.reason
            if table:
                table.writerow([path, "", "", reason])
            else:
                print(f"{path}: {reason}")
        else:
            any_digit = True
            best = top_k(answer.probabilities)
            if table:
                table.writerow([path, best[0][0], f"{best[0][1]:.6f}", ""])
            else:
                others = "  ".join(f"{d}: {p:.1%}" for d, p in best)
                print(f"{path}: {best[0][0]}   ({others})")
        if args.show and answer is not None:
            save_digit_png(digit, args.show / name)
    if args.show and digits:
        print(f"what the model saw: {args.show}/*.seen.png", file=sys.stderr)
    return 0 if any_digit else EXIT_NO_DIGIT


def seen_names(paths) -> list[str]:
    """`--show` file names: NAME.seen.png from each image's stem, made distinct where two
    inputs share one (four.png and four.jpg -> four.png.seen.png, four.jpg.seen.png; the same
    name in two folders -> a number in front)."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    names = [p.stem if stems.count(p.stem) == 1 else p.name for p in paths]
    names = [n if names.count(n) == 1 else f"{i + 1}-{n}" for i, n in enumerate(names)]
    return [f"{n}.seen.png" for n in names]


def cmd_score(args) -> int:
    if args.report:  # the report's summary gives the accuracy; print it once
        print_metrics(report_submission(args.submission, args.answers, args.report), args.report)
        return 0
    score = score_submission(args.submission, args.answers)
    print(f"accuracy {score.accuracy:.4%} ({score.n_images - score.n_errors}/{score.n_images} "
          f"correct, {score.n_errors} errors)")
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


def print_reframed(reframed: int, rows: int) -> None:
    if reframed:
        print(f"reframed     {reframed} of {rows} rows: their digit was not framed as MNIST's "
              "(about 20 px across, centred by mass); --no-reframe reads them as they are")


def cmd_evaluate(args) -> int:
    report_dir = args.report or args.run_dir / "report"
    metrics = evaluate_run(args.run_dir, args.data_csv, report_dir, tta=args.tta,
                           labels_csv=args.labels, reframe=args.reframe)
    print_metrics(metrics, report_dir)
    print_reframed(metrics["data"]["reframed_rows"], metrics["data"]["rows"])
    return 0


def cmd_run(args) -> int:
    config = _config_from_args(args)
    data = args.data or Path("data")
    start = time.perf_counter()
    summary = run(config, data, args.run_dir, members=args.ensemble, jobs=args.jobs,
                  tta=args.tta, write_demo=args.data is None or args.demo_data,
                  reframe=args.reframe, log=log)
    total = time.perf_counter() - start
    run_dir = summary.run_dir
    print()
    print(f"== digit-recognizer: recipe '{config.recipe}' ==")
    if summary.created_demo_data:
        print(f"data         {data}/ (demo data written from the embedded MNIST copy)")
    else:
        print(f"data         {data}/")
    if summary.best_val_accuracy is None:
        print("validation   none (--val-fraction 0)")
    else:
        print(f"validation   {summary.best_val_accuracy:.4%} (kept epoch, split of train.csv)")
    if summary.score is not None:
        how = ", test-time augmentation" if summary.tta else ""
        print(f"held-out     {summary.score.accuracy:.4%} accuracy on {summary.score.n_images} "
              f"test images ({summary.score.n_errors} errors{how})")
    else:
        print("held-out     no answer key (test_labels.csv): upload submission.csv to Kaggle")
    print_reframed(summary.reframed, summary.n_test_rows)
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
    check_port_free(args.host, args.port)
    # loads the run (with the recipe's views unless --tta/--no-tta): a bad one fails before
    # any announcement
    app = create_app(args.run_dir, args.tta)
    log(f"serving {args.run_dir} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    serve(app, host=args.host, port=args.port)
    return 0


def cmd_export(args) -> int:
    exported = export_run(args.run_dir, args.format, args.output, tta=args.tta)
    what = (f"an ensemble of {exported.members}" if exported.members > 1 else "one model") + (
        ", 7 TTA views" if exported.tta else "")
    checked = (f"; matches Keras within {exported.max_difference:.1e}"
               if exported.max_difference is not None else "")
    print(f"wrote {exported.path} ({exported.format}, {exported.size_bytes / 2**20:.1f} MiB, "
          f"{what}{checked})")
    if args.format == "web":
        print(f"serve it with any static file server, e.g. python -m http.server -d "
              f"{exported.path}")
    return 0


def cmd_sweep(args) -> int:
    space = load_space(args.space) if args.space else None  # checked before Ray starts
    result = run_sweep(get_recipe(args.recipe), args.train_csv, args.run_dir, args.trials,
                       space=space, folds=args.folds, epochs=args.epochs,
                       address=args.ray or None, cpus=args.cpus_per_trial, seed=args.seed,
                       log=log)
    ranked = sorted((t for t in result.trials if t["cv_accuracy"] is not None),
                    key=lambda t: -t["cv_accuracy"])
    fields = [k for k in result.trials[0] if k not in ("trial", "cv_accuracy", "folds_done",
                                                         "stopped_early", "seconds", "error")]
    print(f"\n{'trial':>5}  {'CV acc.':>8}  {'folds':>5}  {'seconds':>7}  " + "  ".join(fields))
    for t in ranked[:10]:
        values = "  ".join(f"{t[k]:.4g}" if isinstance(t[k], float) else str(t[k])
                           for k in fields)
        print(f"{t['trial']:>5}  {t['cv_accuracy']:>8.4f}  {t['folds_done']:>5}  "
              f"{t['seconds']:>7.1f}  {values}")
    failed = [t for t in result.trials if t["error"]]
    if failed:
        print(f"{len(failed)} trial(s) failed, e.g.: {failed[0]['error']}")
    print(f"results      {result.out_dir}/results.csv, sweep.png")
    if result.best is None:
        print("best recipe  none: no trial ran every fold")
        return 1
    print(f"best recipe  {result.out_dir}/best-recipe.json (trial {result.best['trial']}, "
          f"{args.folds}-fold CV accuracy {result.best['cv_accuracy']:.4f}); train it with "
          f"`digits train TRAIN_CSV --run-dir RUN --recipe {result.out_dir}/best-recipe.json`")
    return 0


def cmd_info(args) -> int:
    for key, value in machine_info().items():
        print(f"{key:14s} {value}")
    return 0
