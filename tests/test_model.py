import numpy as np
import pytest

from digit_recognizer.config import RECIPES
from digit_recognizer.model import build_model, forward_flops


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_forward_shape_and_probabilities(recipe):
    model = build_model(RECIPES[recipe], pixel_mean=33.0, pixel_std=78.0)
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1)).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert forward_flops(model) > 100_000


def test_tutorial_architecture_is_the_tutorials():
    model = build_model(RECIPES["tutorial"])
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 32, 64, 32, 64, 64]
    assert [c.padding for c in convs] == ["same", "valid"] * 3
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(l.__class__.__name__ == "MaxPooling2D" for l in model.layers) == 3
    dense = [l for l in model.layers if l.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [256, 10]
    # 25.2 MFLOPs per image forward, counted by hand from the layer shapes
    assert forward_flops(model) == pytest.approx(25.2e6, rel=0.01)


def test_normalisation_is_inside_the_model_and_augmentation_is_training_only():
    config = RECIPES["fast"]
    assert config.augment
    model = build_model(config, pixel_mean=10.0, pixel_std=2.0)
    norm = model.get_layer("normalise")
    out = np.asarray(norm(np.full((1, 28, 28, 1), 14.0, "float32")))
    np.testing.assert_allclose(out, 2.0)  # (14 - 10) / 2
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    a, b = np.asarray(model(x, training=False)), np.asarray(model(x, training=False))
    np.testing.assert_array_equal(a, b)  # no random augmentation at inference
    aug = model.get_layer("augment")
    assert not np.array_equal(np.asarray(aug(x, training=True)), x)
