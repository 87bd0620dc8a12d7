import os

from digit_recognizer.tf_env import set_tensorflow_defaults


def test_tensorflow_defaults_fill_in_what_the_user_left_unset(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # the user's choice stays
    set_tensorflow_defaults()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    set_tensorflow_defaults()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
