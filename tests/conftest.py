import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's settings as digit_recognizer.backend makes them, for the test modules that import
# Keras before it does (tf_env imports nothing heavy; backend imports Keras when loaded).
from digit_recognizer.tf_env import set_tensorflow_defaults  # noqa: E402

set_tensorflow_defaults()
# Every `digits` process a test starts prints its Python stack if it crashes (SIGSEGV, SIGABRT):
# a CI failure then says where, not only "-11".
os.environ.setdefault("PYTHONFAULTHANDLER", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from digit_recognizer.config import get_recipe  # noqa: E402
from digit_recognizer.demo import load_embedded_mnist, write_demo_data  # noqa: E402
from digit_recognizer.train import train  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    return load_embedded_mnist()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """Kaggle-format demo files with 400 training rows and 200 test rows."""
    directory = tmp_path_factory.mktemp("demo")
    return write_demo_data(directory, n_train=400, n_test=200, seed=1)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_run(small_demo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = get_recipe("default").replace(epochs=2, batch_size=64, width=8)
    result = train(config, small_demo.train_csv, run_dir, verbose=0)
    return run_dir, config, result
