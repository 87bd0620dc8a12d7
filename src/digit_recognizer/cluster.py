"""Ensemble members as Ray tasks: one machine's cores, or a cluster's (`--ray [ADDRESS]`).

The driver (the `digits` process) owns the run directory; workers never touch it. For each
member the driver claims a slot (RUN/members/NN/) and writes its config.json with status
"queued" (so `--resume` can train it if the driver is stopped), puts the training rows into
Ray's object store once, and submits a task that trains in a temporary folder on whatever node
runs it and returns the member's files as bytes. The driver writes them into the slot, each
atomically and config.json last, so a member is complete or not there at all, even when its
worker dies: Ray then runs the task again (`max_retries`), from the start, on a live node.
So the nodes share no file system; each needs digit-recognizer[train] installed.

Each task asks Ray for `cpus` CPUs (and a GPU when the cluster has one) and sizes TensorFlow's
thread pools to them (TensorFlow ignores Ray's allotment unless told).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from .config import Config
from .data import DigitsData, load_train_csv
from .errors import InputError
from .files import atomic_path, write_json_atomic
from .rundir import CONFIG_FILE, claim_member_dir, init_ensemble, members
from .train import check_can_train

MAX_RETRIES = 3  # a member whose worker or node died is trained again, up to this many times


def connect(address: str | None = None):
    """Join the Ray cluster at `address` (HOST:PORT, or "auto"; RAY_ADDRESS when None), or
    start a local Ray on this machine's cores. Returns the ray module."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and "RAY_AUTH_MODE" not in os.environ and _token_available():
        # `ray start --head` enables token authentication and writes the token here; Ray's
        # client only sends it in token mode
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray  # reads RAY_AUTH_MODE when imported
    except ImportError as e:
        raise InputError("ray", "is not installed: `pip install 'digit-recognizer[ray]'`") from e
    if ray.is_initialized():
        return ray
    # Ray's progress bars replace builtins.print in this process unless told not to: the
    # terminal shows our lines as we print them, and what Tune pickles keeps the real print.
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(address or "ray", f"cannot connect to a Ray cluster ({e}; a cluster "
                         "with token authentication needs its token in ~/.ray/auth_token or "
                         "RAY_AUTH_TOKEN)") from e
    return ray


def _token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def cluster_gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _train_member_files(config: dict, pixels, labels, data_path: str, sha256: str,
                        threads: int) -> dict:
    """A Ray task: train one member in a temporary folder; return its files' bytes."""
    import platform

    from .backend import limit_threads
    from .train import train

    limit_threads(threads)
    data = DigitsData(pixels, labels, data_path, sha256)
    with tempfile.TemporaryDirectory(prefix="digits-member-") as tmp:
        member_dir = Path(tmp) / "member"
        result = train(Config.from_dict(config), data, member_dir, verbose=0)
        files = {p.name: p.read_bytes() for p in member_dir.iterdir() if p.is_file()}
    return {"files": files, "node": platform.node(), "seconds": result.train_seconds,
            "best_val_accuracy": result.best_val_accuracy}


def queue_members(config: Config, data: DigitsData, run_dir, count: int) -> list[Path]:
    """Claim `count` member slots and mark them queued (config.json with the member's config):
    what `--resume` trains if they never finish."""
    from .ensemble import member_seed

    init_ensemble(run_dir, data)
    slots = []
    for _ in range(count):
        index, member_dir = claim_member_dir(run_dir)
        write_json_atomic(member_dir / CONFIG_FILE, {
            "status": "queued",
            "config": config.replace(seed=member_seed(config.seed, index)).to_dict(),
            "data": {"train_csv": str(data.path), "sha256": data.sha256, "rows": len(data)}})
        slots.append(member_dir)
    return slots


def train_members_on_ray(config: Config, data: DigitsData | str | os.PathLike, run_dir,
                         count: int, address: str | None = None, cpus: int = 1, log=None):
    """Add `count` members to the ensemble in `run_dir`, each a Ray task. Returns the members
    added (rundir.Member), in index order."""
    data = data if isinstance(data, DigitsData) else load_train_csv(data)
    check_can_train(data, config, run_dir)
    ray = connect(address)
    slots = queue_members(config, data, run_dir, count)
    train_slots_on_ray(ray, data, slots, cpus, log)
    added = {p.resolve() for p in slots}
    return [m for m in members(run_dir) if m.run_dir.resolve() in added]


def train_slots_on_ray(ray, data: DigitsData, slots: list[Path], cpus: int = 1, log=None):
    """Train the queued member slots `slots` (each with its config.json) as Ray tasks and write
    each member's files into its slot as it completes."""
    from .files import read_json

    gpus = 1 if cluster_gpus(ray) else 0
    task = ray.remote(_train_member_files).options(num_cpus=cpus, num_gpus=gpus,
                                                   max_retries=MAX_RETRIES)
    pixels, labels = ray.put(data.pixels), ray.put(data.labels)
    pending = {}
    for slot in slots:
        config = read_json(slot / CONFIG_FILE)["config"]
        pending[task.remote(config, pixels, labels, str(data.path), data.sha256, cpus)] = slot
        if log:
            log(f"member {slot.name}: queued on Ray, recipe '{config['recipe']}', seed "
                f"{config['seed']}, {cpus} CPU{'s' if cpus > 1 else ''}"
                f"{' + 1 GPU' if gpus else ''}")
    capacity = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
    start, done, failed = time.perf_counter(), 0, []
    try:
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            slot = pending.pop(finished[0])
            try:
                out = ray.get(finished[0])
            except ray.exceptions.RayError as e:
                failed.append(f"member {slot.name}: {str(e).splitlines()[0][:200]}")
                if log:
                    log(failed[-1])
                continue
            write_member_files(slot, out["files"])
            done += 1
            if log:
                elapsed = time.perf_counter() - start
                log(f"member {slot.name}: done on {out['node']}, kept epoch's validation accuracy "
                    f"{out['best_val_accuracy']:.4f}, {out['seconds']:.1f} s")
                log(f"ensemble: {done}/{len(slots)} members done, "
                    f"{min(len(pending), capacity)} running, "
                    f"{max(0, len(pending) - capacity)} queued, {elapsed:.0f} s elapsed")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    if failed:
        raise RuntimeError(f"{len(failed)} member(s) failed on Ray ({'; '.join(failed)}); "
                           "the finished members are usable, `digits train --resume` retries")


def write_member_files(slot: Path, files: dict) -> None:
    """A finished member's files into its slot: each atomically, config.json last, so a
    reader sees the queued member or the complete one."""
    for name in sorted(files, key=lambda n: n == CONFIG_FILE):
        if "/" in name or name.startswith("."):
            raise ValueError(f"unexpected member file name {name!r}")
        with atomic_path(slot / name) as tmp:
            tmp.write_bytes(files[name])
