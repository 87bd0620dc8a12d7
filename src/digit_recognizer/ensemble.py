"""Ensembles: several independently trained models in one run directory (layout: rundir.py).

Member k (1-based) trains with seed `config.seed + k - 1`, so each gets its own stratified
validation split of the training CSV, its own initialisation and augmentation; the
members together see every training row. A member claims its slot by creating its directory
(atomic), so several processes (or a later `--add-members`) can add members to one ensemble at
the same time. predict/evaluate average the probabilities of every member whose training
completed: a half-finished ensemble is usable.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time

from .config import Config
from .data import DigitsData, load_train_csv
from .errors import EXIT_INTERRUPTED, InputError, show_warnings_as_lines
from .rundir import (BACKUP_DIR, Member, claim_member_dir, init_ensemble, is_ensemble, members,
                     training_data_of)
from .train import check_can_train, result_of, resume_training, train


def train_member(config: Config, data: DigitsData | str | os.PathLike, run_dir,
                 verbose: int | str = "auto", log=None):
    """Train one more member of the ensemble in `run_dir` (seed = config.seed + index - 1).
    `log` (e.g. print) gets a line when the member starts, after each epoch and at its end."""
    data = data if isinstance(data, DigitsData) else load_train_csv(data)
    check_can_train(data, config, run_dir)  # before ensemble.json or a slot is written
    init_ensemble(run_dir, data)
    index, member_dir = claim_member_dir(run_dir)
    member_config = config.replace(seed=member_seed(config.seed, index))
    prefix = f"member {index:02d}"
    callbacks = []
    if log:
        log(f"{prefix}: started, recipe '{member_config.recipe}', seed {member_config.seed}, "
            f"{member_config.epochs} epochs")
        from .callbacks import EpochLogger  # Keras: imported once the data is checked

        callbacks.append(EpochLogger(log, prefix, member_config.epochs))
    result = train(member_config, data, member_dir, callbacks=callbacks,
                   verbose=0 if log else verbose)
    if log:
        log(f"{prefix}: done, kept epoch {result.best_epoch}: "
            f"{result.monitor.replace('_', ' ')} {result.best_accuracy:.4f}, "
            f"{result.train_seconds:.1f} s")
    return result


def member_seed(base_seed: int, index: int) -> int:
    """Member `index` (1-based) trains with seed base + index - 1 (its own split and init)."""
    return base_seed + index - 1


def base_config(run_dir) -> Config | None:
    """The config new members of an existing ensemble get by default: the first member's, with
    the seed its member 1 would have (so seeds keep counting on). None while no member has one."""
    first = next((m for m in members(run_dir) if m.config), None)
    if first is None:
        return None
    return first.config.replace(seed=first.seed - member_seed(0, first.index))


def train_members(config: Config, data: DigitsData | str | os.PathLike, run_dir, count: int,
                  jobs: int = 1, verbose: int | str = "auto", log=None) -> list[Member]:
    """Add `count` members to the ensemble in `run_dir` (created if new), `jobs` at a time.

    With jobs > 1 each member trains in its own process with cores/jobs threads: on 2 cores,
    two one-thread processes train ~15% more images per second in total than one two-thread
    process (small convolutions do not split well across threads; bench/README.md).
    `log` (a picklable callable such as print; None for silence) receives progress lines as
    members run: start, every epoch, the end, and members done / running / time left.
    Returns the members added, in index order.
    """
    data = data if isinstance(data, DigitsData) else load_train_csv(data)
    check_can_train(data, config, run_dir)
    init_ensemble(run_dir, data)
    before = {m.index for m in members(run_dir)}
    progress = EnsembleProgress(count, log)
    if jobs <= 1:
        for _ in range(count):
            progress.started()
            train_member(config, data, run_dir, verbose=verbose, log=log)
            progress.finished()
    else:
        _train_in_processes(config, data.path, run_dir, count, jobs, progress, log)
    return [m for m in members(run_dir) if m.index not in before]


class EnsembleProgress:
    """Members done / running, elapsed time and an estimate of the rest, as one line each time
    a member ends."""

    def __init__(self, count: int, log):
        self.count, self.log = count, log
        self.done = self.running = 0
        self.start = time.perf_counter()

    def started(self) -> None:
        self.running += 1

    def finished(self) -> None:
        self.running -= 1
        self.done += 1
        if not self.log:
            return
        elapsed = time.perf_counter() - self.start
        left = self.count - self.done
        # Members finish at a steady rate (same recipe, same data): the rest take as long.
        estimate = f", about {_minutes(elapsed / self.done * left)} left" if left else ""
        self.log(f"ensemble: {self.done}/{self.count} members done, {self.running} running, "
                 f"{_minutes(elapsed)} elapsed{estimate}")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def resume(run_dir, verbose: int | str = "auto", ray_address: str | None = None,
           use_ray: bool = False, cpus: int = 1, log=None) -> list:
    """Continue training: a single run from its last completed epoch; an ensemble, each member
    that was interrupted (from its last epoch, here), and each member still queued by a Ray
    run that stopped (from the start: on Ray with `use_ray`, else here). Returns the
    TrainResults."""
    if not is_ensemble(run_dir):
        return [resume_training(run_dir, verbose=verbose)]
    stopped = [m for m in members(run_dir)
               if m.status not in ("complete", "queued") and (m.run_dir / BACKUP_DIR).is_dir()]
    queued = [m for m in members(run_dir) if m.status == "queued"]
    if not stopped and not queued:
        raise InputError(run_dir, "has no interrupted or queued member to resume")
    results = [resume_training(m.run_dir, verbose=verbose) for m in stopped]
    if queued:
        trained_on = training_data_of(run_dir)
        data = load_train_csv(trained_on["train_csv"])
        if data.sha256 != trained_on["sha256"]:
            raise InputError(data.path, "changed since the ensemble started (sha256 differs)")
        if use_ray:
            from .cluster import connect, train_slots_on_ray

            train_slots_on_ray(connect(ray_address), data, [m.run_dir for m in queued], cpus,
                               log)
            results += [result_of(m.run_dir) for m in queued]
        else:
            results += [train(m.config, data, m.run_dir, verbose=verbose) for m in queued]
    return results


def _train_in_processes(config: Config, train_csv, run_dir, count: int, jobs: int,
                        progress: EnsembleProgress, log) -> None:
    context = multiprocessing.get_context("spawn")  # no TensorFlow state inherited by fork
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending, running, failed = count, [], []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                process = context.Process(target=_member_process, daemon=False,
                                          args=(config.to_dict(), str(train_csv), str(run_dir),
                                                threads, log))
                process.start()
                progress.started()
                running.append(process)
                pending -= 1
            multiprocessing.connection.wait([p.sentinel for p in running])
            for process in [p for p in running if not p.is_alive()]:
                running.remove(process)
                if process.exitcode != 0:
                    failed.append(process.exitcode)
                progress.finished()
    except KeyboardInterrupt:
        for process in running:  # each member stops cleanly: kept model and history stay
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in running:
            process.join()
        raise
    if failed:
        raise RuntimeError(f"{len(failed)} ensemble member process(es) failed "
                           f"(exit codes {failed}); the members that finished are usable")


def _member_process(config: dict, train_csv: str, run_dir: str, threads: int, log) -> None:
    """Entry point of a member's process: limit threads before the backend starts, train.
    Ctrl-C, from the start-up (Keras's import takes seconds) to the end, exits quietly with
    EXIT_INTERRUPTED: the parent says so once, rather than a traceback per member."""
    try:
        from .backend import limit_threads

        show_warnings_as_lines()
        limit_threads(threads)
        train_member(Config.from_dict(config), train_csv, run_dir, verbose=0, log=log)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
