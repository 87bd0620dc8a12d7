"""Ensembles and sweeps on Ray: on a real two-node cluster started with `ray start` on
127.0.0.1 (a head and a second node, one CPU each), including a node killed mid-run; and the
pieces that need no cluster (queued slots, member files, recipe and space files)."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.cluster import queue_members, write_member_files
from digit_recognizer.config import get_recipe, load_recipe_file
from digit_recognizer.data import load_train_csv
from digit_recognizer.ensemble import resume
from digit_recognizer.errors import InputError
from digit_recognizer.predict import load_run
from digit_recognizer.rundir import members
from digit_recognizer.sweep import load_space

from test_cli import DIGITS, digits

RAY = str(Path(sys.executable).parent / "ray")
TINY = ["--epochs", "1", "--batch-size", "64"]
SAFETY_NET_S = 1800  # only against a hang; every wait below ends on an event


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry.name)] = (ppid, cmdline)
    return found


def _descendants(root: int, procs) -> set[int]:
    out, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in procs.items() if ppid in frontier} - out
        out |= frontier
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head` on 127.0.0.1 at a free port, plus a second node; `ray stop` after,
    even when a test failed."""
    port, worker_port = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"]
    # Token authentication with a token of our own, in the environment that both nodes and
    # every `digits` the tests start inherit (digits switches to token mode when a token
    # exists). Ray's default differs between releases (2.5x wrote ~/.ray/auth_token at `ray
    # start --head`; 2.60 refuses token mode without one), so the test does not rely on it.
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    try:
        subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                        str(port), "--include-dashboard=false", *common], check=True,
                       capture_output=True, env=env, timeout=SAFETY_NET_S)
        subprocess.run([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1",
                        "--node-manager-port", str(worker_port), *common], check=True,
                       capture_output=True, env=env, timeout=SAFETY_NET_S)
        yield {"address": address, "worker_port": worker_port}
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=SAFETY_NET_S)
        patch.undo()


@pytest.fixture(scope="module")
def tiny_csv(small_demo):
    return small_demo.train_csv


def _complete_members(run_dir, count):
    found = members(run_dir)
    assert [m.status for m in found] == ["complete"] * count
    assert all(m.usable for m in found)
    run = load_run(run_dir)  # every member loads and predicts
    assert len(run.models) == count
    return found


@pytest.mark.slow
def test_an_ensemble_trains_on_a_two_node_cluster(cluster, tiny_csv, tmp_path):
    out = digits("train", tiny_csv, "--run-dir", tmp_path / "ens", "--ensemble", 2, *TINY,
                 "--ray", cluster["address"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": done on ") == 2 and "ensemble: 2/2 members done" in out.stdout
    found = _complete_members(tmp_path / "ens", 2)
    assert [m.seed for m in found] == [2, 3]
    # --add-members works on the cluster too, seeds counting on
    out = digits("train", "--run-dir", tmp_path / "ens", "--add-members", 1, "--ray",
                 cluster["address"])
    assert out.returncode == 0, out.stderr
    assert [m.seed for m in _complete_members(tmp_path / "ens", 3)] == [2, 3, 4]


@pytest.mark.slow
def test_a_node_killed_mid_run_leaves_every_member_valid(cluster, tiny_csv, tmp_path):
    run_dir = tmp_path / "ens"
    proc = subprocess.Popen([*DIGITS, "train", str(tiny_csv), "--run-dir", str(run_dir),
                             "--ensemble", "2", "--epochs", "3", "--batch-size", "16", "--ray",
                             cluster["address"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = f"--node_manager_port={cluster['worker_port']}"
    deadline = time.monotonic() + SAFETY_NET_S
    victims = None
    # The event: a member task running on the second node (a descendant of its raylet).
    while victims is None:
        assert proc.poll() is None, f"finished before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "no member task ever ran on the second node"
        procs = _processes()
        raylets = [pid for pid, (_, cmd) in procs.items() if "raylet" in cmd and marker in cmd]
        for raylet in raylets:
            below = _descendants(raylet, procs)
            if any(procs[pid][1].startswith("ray::_train_member_files") for pid in below):
                victims = [raylet, *below]
        time.sleep(0.2)
    for pid in victims:  # the node goes away as a machine would: all of it, at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stdout, stderr = proc.communicate(timeout=SAFETY_NET_S)
    assert proc.returncode == 0, stderr
    _complete_members(run_dir, 2)  # the lost member ran again on the head node
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]  # no half-written file


@pytest.mark.slow
def test_a_three_trial_sweep_on_the_cluster(cluster, tiny_csv, tmp_path):
    out = digits("sweep", tiny_csv, "--run-dir", tmp_path / "sweep", "--trials", 3, "--folds", 2,
                 "--epochs", 1, "--ray", cluster["address"])
    assert out.returncode == 0, out.stderr
    import pandas as pd

    results = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert len(results) == 3 and results["trial"].tolist() == [1, 2, 3]
    assert results["cv_accuracy"].between(0, 1).all()
    assert {"learning_rate", "width", "folds_done", "seconds"} <= set(results.columns)
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    best = json.loads((tmp_path / "sweep" / "best-recipe.json").read_text())
    complete = results[results["folds_done"] == 2]
    assert best["sweep"]["cv_accuracy"] == pytest.approx(complete["cv_accuracy"].max())
    config = get_recipe(str(tmp_path / "sweep" / "best-recipe.json"))
    assert config.recipe == "quick-sweep" and config.width == best["width"]
    out = digits("train", tiny_csv, "--run-dir", tmp_path / "tuned", "--recipe",
                 tmp_path / "sweep" / "best-recipe.json", "--epochs", 1)
    assert out.returncode == 0, out.stderr
    info = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert info["config"]["recipe"] == "quick-sweep"


# ---------------------------------------------------------------------------------------------
# No cluster needed


def test_queued_slots_resume_here_when_the_driver_stopped(tiny_csv, tmp_path):
    config = get_recipe("default").replace(epochs=1, batch_size=64, width=8)
    data = load_train_csv(tiny_csv)
    slots = queue_members(config, data, tmp_path / "ens", 2)
    assert [m.status for m in members(tmp_path / "ens")] == ["queued", "queued"]
    assert [m.seed for m in members(tmp_path / "ens")] == [2, 3]
    with pytest.raises(InputError, match="no finished member"):
        load_run(tmp_path / "ens")  # queued members are not usable
    results = resume(tmp_path / "ens", verbose=0)
    assert [r.run_dir for r in results] == slots
    _complete_members(tmp_path / "ens", 2)


def test_member_files_land_config_last_and_atomically(tmp_path):
    seen = []

    class Recording(dict):
        def __getitem__(self, name):
            seen.append(name)
            return super().__getitem__(name)

    write_member_files(tmp_path, Recording({"config.json": b"{}", "model.keras": b"m",
                                            "history.csv": b"h"}))
    assert seen[-1] == "config.json" and sorted(seen) == ["config.json", "history.csv",
                                                          "model.keras"]
    assert (tmp_path / "model.keras").read_bytes() == b"m"
    with pytest.raises(ValueError):
        write_member_files(tmp_path, {"../escape": b"x"})


def test_recipe_and_space_files_are_checked(tmp_path):
    good = tmp_path / "r.json"
    good.write_text(json.dumps({"recipe": "mine", "width": 24, "learning_rate": 0.004,
                                "sweep": {"cv_accuracy": 0.99}}))
    config = load_recipe_file(good)
    assert config.width == 24 and config.learning_rate == 0.004 and config.epochs == 4
    for bad, message in [({"widht": 24}, "unknown field"), ({"width": "24"}, "should be int"),
                         ({"augment": 1}, "should be bool"), ([1, 2], "JSON object")]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(InputError, match=message):
            load_recipe_file(path)
    space = tmp_path / "space.yaml"
    space.write_text("width: {choice: [16, 32]}\nlearning_rate: {loguniform: [0.001, 0.01]}\n"
                     "epochs: 2\n")
    assert load_space(space)["width"] == {"choice": [16, 32]}
    for text, message in [('{"seed": {"choice": [1, 2]}}', "not a field"),
                          ('{"width": {"between": [1, 2]}}', "give one of"),
                          ('{"dropout": {"uniform": [0.1]}}', r"\[low, high\]")]:
        bad = tmp_path / "space.json"
        bad.write_text(text)
        with pytest.raises(InputError, match=message):
            load_space(bad)


def test_ray_options_need_an_ensemble_and_a_reachable_cluster(tiny_csv, tmp_path):
    out = digits("train", tiny_csv, "--run-dir", tmp_path / "r", "--ray")
    assert out.returncode == 2 and "add --ensemble N" in out.stderr
    out = digits("train", tiny_csv, "--run-dir", tmp_path / "r", "--ensemble", 2, "--ray",
                 "--jobs", 2)
    assert out.returncode == 2 and "--cpus-per-member" in out.stderr
    out = digits("sweep", tiny_csv, "--run-dir", tmp_path / "s", "--space", tmp_path / "no.json")
    assert out.returncode == 2 and "no such search space file" in out.stderr
    assert not (tmp_path / "s").exists()


def info_lines(env=None) -> dict[str, str]:
    """`digits info`'s lines as {name: value} (`env`: the process's whole environment)."""
    out = digits("info", env=env)
    assert out.returncode == 0, out.stderr
    return dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())


def test_info_names_versions_and_devices():
    lines = info_lines()
    assert lines["keras"][0].isdigit() and "CPU" in lines["devices"]
    assert lines["gpu"].startswith("none found") or "training uses it" in lines["gpu"]
    assert np.char.isnumeric(lines["digits"].replace(".", "")).item()


def test_onednn_is_on_unless_the_user_turns_it_off():
    """TensorFlow leaves its oneDNN kernels off on some x86 CPUs (a Zen 3: 1.2-2.5x slower);
    the tool turns them on there (tf_env.py, applied by backend.py) and keeps the user's
    TF_ENABLE_ONEDNN_OPTS=0. Without oneDNN, bfloat16 is emulated: no recipe trains in it."""
    def lines(**env):
        base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        return info_lines({**base, **env})

    assert lines()["onednn"] == "on"
    off = lines(TF_ENABLE_ONEDNN_OPTS="0")
    assert off["onednn"] == "off (TF_ENABLE_ONEDNN_OPTS=0)"
    assert off["bfloat16"].startswith("not native here")


def test_the_sweep_progress_callback_pickles_after_print_is_replaced(monkeypatch):
    """Ray Tune pickles the sweep's callbacks; a Ray component may have replaced
    builtins.print in the driver by then (a CI run failed so): our log must still pickle."""
    import builtins

    from ray import cloudpickle

    from digit_recognizer.commands import log
    from digit_recognizer.sweep import _progress_callback

    monkeypatch.setattr(builtins, "print", lambda *args, **kwargs: None)
    callback = cloudpickle.loads(cloudpickle.dumps(_progress_callback(3, 2, log)))
    assert callback.done == 0
