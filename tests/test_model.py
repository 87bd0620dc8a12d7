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


def test_tutorial_recipe_trains_as_the_tutorial_describes():
    """RMSprop, batch 32, 50 epochs, LR halved on plateaus, the best validation epoch kept, and
    its ImageDataGenerator's on-the-fly rotation 10 degrees, zoom 0.1 and shifts 0.1 (left off
    by mistake until 2026-12-03), one resampling per image as ImageDataGenerator makes it."""
    from digit_recognizer.model import build_augmentation
    from digit_recognizer.train import augmentation_place

    config = RECIPES["tutorial"]
    assert (config.optimizer, config.batch_size, config.epochs, config.lr_schedule,
            config.checkpoint) == ("rmsprop", 32, 50, "plateau", "best")
    assert config.augment and (config.rotation, config.zoom, config.shift) == (10.0, 0.1, 0.1)
    assert config.pen == 0.0  # the tutorial draws no other pens
    assert [type(l).__name__ for l in build_augmentation(config).layers] == ["RandomAffine"]
    assert augmentation_place(config) != "none"


def test_image_data_generator_moves_as_keras_2_does():
    """RandomAffine's maps against Keras 2's apply_affine_transform, written out as it was
    (rotation @ shift @ zoom about (h/2 + 0.5, w/2 + 0.5), scipy's order-1 resampling, the
    border extended): the same pixels to float32 rounding, ink on the border row included."""
    import scipy.ndimage as ndi

    from digit_recognizer.model import RandomAffine, image_data_generator_move

    def keras_2(image, theta, tx, ty, zx, zy):
        theta = np.deg2rad(theta)
        rotation = np.array([[np.cos(theta), -np.sin(theta), 0],
                             [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        o_x, o_y = image.shape[0] / 2 + 0.5, image.shape[1] / 2 + 0.5
        m = (np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]]) @ rotation @ shift @ zoom
             @ np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]]))
        return ndi.affine_transform(image, m[:2, :2], m[:2, 2], order=1, mode="nearest")

    x = np.zeros((4, 28, 28), np.float32)
    x[:, 5:22, 12:16], x[:, 5:8, 6:20], x[:, 27, 3:9] = 255, 200, 90
    u = np.random.default_rng(0).uniform(-1, 1, (4, 5)).astype(np.float32)
    moved = np.asarray(image_data_generator_move(x[..., None], u, 10.0, 0.1, 0.1))[..., 0]
    for image, got, (a, b, c, d, e) in zip(x, moved, u):
        expected = keras_2(image, a * 10, b * 2.8, c * 2.8, 1 + d * 0.1, 1 + e * 0.1)
        assert np.abs(expected - image).max() > 100  # it moved
        np.testing.assert_allclose(got, expected, atol=0.01)
    layer = RandomAffine(10.0, 0.1, 0.1, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(x[..., None], training=False)), x[..., None])
    trained = np.asarray(layer(x[..., None], training=True))
    assert trained.shape == (4, 28, 28, 1) and not np.array_equal(trained[0], trained[1])


def test_strided_architecture_is_deottes():
    """Per stage two 3x3 valid convs and a 5x5 stride-2 conv (no pooling), then a 4x4 conv to
    1x1: the maps shrink 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4 -> 1."""
    from digit_recognizer.config import get_recipe

    model = build_model(get_recipe("default").replace(architecture="strided", width=32,
                                                      augment=False))
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.output.shape[1] for c in convs] == [26, 24, 12, 10, 8, 4, 1]
    assert [c.filters for c in convs] == [32, 32, 32, 64, 64, 64, 128]
    assert [c.kernel_size[0] for c in convs] == [3, 3, 5, 3, 3, 5, 4]
    assert [c.strides[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1]
    assert not any(l.__class__.__name__ == "MaxPooling2D" for l in model.layers)
    assert sum(l.__class__.__name__ == "FusedBatchNormalization" for l in model.layers) == 7
    # 30.3 MFLOPs per image forward, counted by hand from the layer shapes
    assert forward_flops(model) == 2 * (676 * 9 * 32 + 576 * 9 * 32 * 32 + 144 * 25 * 32 * 32
                                        + 100 * 9 * 32 * 64 + 64 * 9 * 64 * 64
                                        + 16 * 25 * 64 * 64 + 16 * 64 * 128 + 128 * 10)


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


def test_a_zero_factor_adds_no_resampling_layer():
    """Keras's rotation, zoom and shift layers resample every image even at a factor of 0
    (blurring it and costing ~2 ms per batch), so a zero factor leaves its layer out."""
    from digit_recognizer.model import build_augmentation

    def kinds(**changes):
        return [type(l).__name__ for l in
                build_augmentation(RECIPES["default"].replace(**changes)).layers]

    assert kinds() == ["RandomPen", "RandomRotation", "RandomZoom", "RandomTranslation"]
    assert kinds(rotation=0.0, shift=0.0) == ["RandomPen", "RandomZoom"]
    nothing = build_augmentation(RECIPES["default"].replace(rotation=0.0, zoom=0.0, shift=0.0,
                                                            pen=0.0))
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(nothing(x, training=True)), x)
    zoom_only = build_augmentation(RECIPES["default"].replace(rotation=0.0, shift=0.0, pen=0.0))
    assert not np.array_equal(np.asarray(zoom_only(x, training=True)), x)


def test_random_pen_changes_a_share_in_training_only(mnist):
    from digit_recognizer.model import RandomPen

    x = mnist["test_pixels"][:200].astype("float32")[..., None]
    assert np.array_equal(np.asarray(RandomPen(1.0, seed=0)(x, training=False)), x)
    for rate in (1.0, 0.3):
        y = np.asarray(RandomPen(rate, seed=0)(x, training=True))
        changed = (np.abs(y - x).reshape(200, -1).max(axis=1) > 1).mean()
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255.5
        assert abs(changed - rate) < 0.12, (rate, changed)
    one = np.asarray(RandomPen(1.0, seed=0)(x[:1], training=True))
    assert not np.array_equal(one, x[:1])  # a batch of one is redrawn too


def test_each_pen_style_draws_another_pen(mnist):
    from digit_recognizer.model import PEN_STYLES, RandomPen

    x = mnist["test_pixels"][:50].astype("float32")[..., None]
    seen = {name: np.asarray(RandomPen(1.0, seed=0, styles=name)(x, training=True))
            for name in PEN_STYLES}
    ink = {name: (y > 127).sum() for name, y in seen.items()}
    assert (x > 127).sum() < ink["thick"] < ink["marker"]  # 2 px, then 4 px thicker
    for name, y in seen.items():
        assert y.shape == x.shape and not np.allclose(y, x), name
    # a low-resolution scan blurs but keeps the ink where it was (mass within 10%)
    for name in ("low10", "low14"):
        assert abs(seen[name].sum() / x.sum() - 1) < 0.1, name


@pytest.mark.parametrize("px", [1, 2, 3, 4])
def test_thicker_strokes_are_max_pooling_with_same_padding(mnist, px):
    from digit_recognizer.backend import keras
    from digit_recognizer.model import _thicker

    x = np.concatenate([mnist["test_pixels"][:8].astype("float32")[..., None],
                        np.random.default_rng(px).integers(0, 256, (4, 28, 28, 1))
                        .astype("float32")])
    x[-1] = 0.0
    x[-1, 0, 0], x[-1, 27, 27], x[-1, 0, 27] = 255.0, 128.0, 7.0  # ink at the corners
    expected = keras.ops.nn.max_pool(x, px + 1, strides=1, padding="same")
    np.testing.assert_array_equal(np.asarray(_thicker(x, px)), np.asarray(expected))


def test_filling_stretches_each_digit_to_a_20_px_square_at_the_centre(mnist):
    from digit_recognizer.model import PEN_STYLES

    x = mnist["test_pixels"][:20].astype("float32")[..., None]
    bar = np.zeros((1, 28, 28, 1), np.float32)
    bar[0, 3:25, 17:20] = 255.0  # a thin upright 1, off-centre
    y = np.asarray(PEN_STYLES["filling"](np.concatenate([x, bar, 0 * bar])))
    for image in y[:20, ..., 0]:  # ink (15% of the peak) spans rows and columns 4..23
        rows, cols = np.flatnonzero(image.max(1) > 0.15 * image.max()), \
            np.flatnonzero(image.max(0) > 0.15 * image.max())
        assert abs(rows[0] - 4) <= 1 and abs(rows[-1] - 23) <= 1, rows
        assert abs(cols[0] - 4) <= 1 and abs(cols[-1] - 23) <= 1, cols
    assert y[-2, 10:18, 6:22].min() > 200  # the bar became a wide block
    assert not y[-1].any()  # a blank image stays blank


def test_random_pen_gives_each_style_an_equal_part_of_its_share(mnist):
    from digit_recognizer.model import RandomPen

    x = mnist["test_pixels"][:300].astype("float32")[..., None]
    styles = ["thick", "marker", "low10"]
    y = np.asarray(RandomPen(1.0, seed=0, styles=",".join(styles))(x, training=True))
    each = [np.asarray(RandomPen(1.0, seed=0, styles=s)(x, training=True)) for s in styles]
    which = np.array([[np.allclose(y[i], e[i], atol=1e-3) for e in each] for i in range(300)])
    assert which.any(axis=1).all()  # every image is exactly one style's, not a mixture
    counts = which.argmax(axis=1)
    assert all(abs((counts == k).sum() - 100) < 35 for k in range(3)), np.bincount(counts)
    # a 0.3 share of 128 images in six styles: floor(128 * 0.05 * i) bounds, 38 images redrawn,
    # as many whichever the seed, the rest untouched
    x = mnist["test_pixels"][:128].astype("float32")[..., None]
    for seed in (0, 1):
        y = np.asarray(RandomPen(0.3, seed=seed, styles="thick,marker,low10,low14,"
                                 "thick-low12,filling")(x, training=True))
        assert (np.abs(y - x).reshape(128, -1).max(axis=1) > 0).sum() == 38


def test_an_unknown_pen_style_is_refused_with_the_choices():
    from digit_recognizer.config import get_recipe
    from digit_recognizer.model import build_model

    with pytest.raises(ValueError, match="unknown pen style crayon; choose from thick"):
        build_model(get_recipe("default").replace(pen_styles="thick,crayon"))


def test_the_names_a_recipe_file_is_checked_against_are_what_the_model_builds():
    from digit_recognizer.config import CHOICES, PEN_STYLE_NAMES
    from digit_recognizer.model import ARCHITECTURES, PEN_STYLES

    assert tuple(PEN_STYLES) == PEN_STYLE_NAMES
    assert tuple(ARCHITECTURES) == CHOICES["architecture"]


def test_a_model_with_our_layers_saves_and_loads_safely(tmp_path):
    from digit_recognizer.backend import keras
    from digit_recognizer.config import get_recipe
    from digit_recognizer.model import build_model

    model = build_model(get_recipe("default").replace(width=8))
    assert get_recipe("default").pen > 0
    assert any(type(layer).__name__ == "RandomPen" for layer in model.get_layer("augment").layers)
    assert any(type(layer).__name__ == "FusedBatchNormalization" for layer in model.layers)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
    assert np.allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


CONV, BN, RELU, POOL = "Conv2D", "FusedBatchNormalization", "Activation", "MaxPooling2D"


@pytest.mark.parametrize("conv_norm, stages", [
    ("before_pool", [CONV, BN, RELU, POOL] * 2),
    ("after_pool", [CONV, POOL, BN, RELU] * 2),
    ("after_last_pool", [CONV, POOL, RELU, CONV, POOL, BN, RELU]),
    ("none", [CONV, POOL, RELU] * 2),
])
def test_quick_net_normalises_where_asked(conv_norm, stages):
    model = build_model(RECIPES["quick"].replace(conv_norm=conv_norm, width=16, width2=0))
    kinds = [l.__class__.__name__ for l in model.layers]
    start = kinds.index(CONV)
    assert kinds[start:kinds.index("Flatten")] == stages
    convs = [l for l in model.layers if l.__class__.__name__ == CONV]
    # a bias only where no batch norm follows (its shift would make the bias redundant)
    assert [c.use_bias for c in convs] == [stages[i + 1:i + 4].count(BN) == 0
                                           for i, kind in enumerate(stages) if kind == CONV]
    assert [c.filters for c in convs] == [16, 16 + 16 // 3]  # width2=0: width + width // 3
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    assert np.asarray(model(x, training=False)).shape == (3, 10)
    with pytest.raises(ValueError, match="conv_norm"):
        build_model(RECIPES["quick"].replace(conv_norm="sideways"))


def test_quick_net_second_conv_takes_width2():
    model = build_model(RECIPES["quick"].replace(width=16, width2=32))
    convs = [l for l in model.layers if l.__class__.__name__ == CONV]
    assert [c.filters for c in convs] == [16, 32]
    assert [c.output.shape[1] for c in convs] == [24, 10]  # valid 5x5 at 28, 3x3 at 12


@pytest.mark.parametrize("shape", [(16, 6, 6, 8), (16, 12)], ids=["maps", "dense"])
def test_fused_batch_norm_computes_what_keras_batch_norm_computes(shape):
    """Training and inference outputs, gradients and moving statistics, to float32 rounding:
    the fused kernel is the same function computed differently."""
    import tensorflow as tf

    from digit_recognizer.backend import keras
    from digit_recognizer.model import FusedBatchNormalization

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, shape).astype("float32"))
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))
    ours, theirs = FusedBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(
        momentum=0.9)
    ours.build(shape)
    theirs.build(shape)
    ours.gamma.assign(rng.uniform(0.5, 1.5, shape[-1]).astype("float32"))
    ours.beta.assign(rng.normal(size=shape[-1]).astype("float32"))
    theirs.set_weights(ours.get_weights())
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        y2 = layer(x, training=True)  # a second step: the moving statistics move again
        results.append([y, *grads, y2, layer.moving_mean, layer.moving_variance,
                        layer(x, training=False)])
    assert not np.allclose(ours.moving_variance.numpy(), 1.0)  # the statistics did move
    for mine, keras_own in zip(*results):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(keras_own), rtol=1e-4,
                                   atol=1e-4)


def test_mixed_bfloat16_computes_in_bfloat16_and_saves_a_float32_copy(rng):
    """precision "mixed_bfloat16": the network's layers compute in bfloat16 over float32
    variables, the normalisation and the softmax in float32; float32_copy holds the same
    weights with every layer in float32 and reads the same probabilities to bfloat16 rounding."""
    from digit_recognizer.backend import keras
    from digit_recognizer.model import float32_copy

    model = build_model(RECIPES["best"].replace(precision="mixed_bfloat16", width=8))
    computes = {layer.name: layer.compute_dtype for layer in model.layers}
    assert computes["normalise"] == "float32" and computes["probabilities"] == "float32"
    inner = [l for l in model.layers if type(l).__name__ in (CONV, BN)]
    assert len(inner) == 14 and {l.compute_dtype for l in inner} == {"bfloat16"}
    assert {w.dtype for l in inner for w in l.weights} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was

    copy = float32_copy(model)
    assert {l.compute_dtype for l in copy.layers} == {"float32"}
    for mine, its in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, its)
    x = rng.uniform(0, 255, (16, 28, 28, 1)).astype("float32")
    p, q = np.asarray(model(x, training=False)), np.asarray(copy(x, training=False))
    assert p.dtype == np.float32 and not np.array_equal(p, q)  # other arithmetic...
    np.testing.assert_allclose(p, q, atol=0.03)  # ... the same function (bfloat16: ~3 digits)


def test_fused_batch_norm_runs_its_kernel_on_bfloat16_maps():
    """Mixed precision hands batch norm bfloat16 maps; the fused kernel takes them (Keras's own
    batch norm in bfloat16 took all of `best`'s gain, bench/README.md) and computes what
    Keras's layer computes, to bfloat16 rounding."""
    import tensorflow as tf

    from digit_recognizer.backend import keras
    from digit_recognizer.model import FusedBatchNormalization

    shape = (16, 6, 6, 8)
    x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, shape).astype("float32"))
    ours = FusedBatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    theirs = keras.layers.BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
    ours.build(shape)
    theirs.build(shape)
    graph = tf.function(lambda v: ours(v, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    y, z = ours(x, training=True), theirs(x, training=True)
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32), tf.cast(z, tf.float32), atol=0.05)
    assert not np.allclose(ours.moving_mean.numpy(), 0.0)  # the statistics did move ...
    for mine, its in ((ours.moving_mean, theirs.moving_mean),
                      (ours.moving_variance, theirs.moving_variance)):
        np.testing.assert_allclose(mine.numpy(), its.numpy(), rtol=1e-3)  # ... alike


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    from digit_recognizer import backend
    from digit_recognizer.model import resolve_precision

    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
    monkeypatch.setattr(backend, "onednn_state", lambda: "on")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # oneDNN not capped
    assert backend.native_bfloat16(flags.format("avx512_bf16"))
    assert backend.native_bfloat16(flags.format("amx_bf16 amx_tile"))
    assert not backend.native_bfloat16(flags.format("avx512_vnni"))
    with monkeypatch.context() as capped:  # oneDNN kept below the CPU's bfloat16 instructions
        capped.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_vnni")
        assert not backend.native_bfloat16(flags.format("avx512_bf16"))
        capped.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
        assert backend.native_bfloat16(flags.format("avx512_bf16"))
    import tensorflow as tf

    with monkeypatch.context() as gpu:  # training runs on the GPU: only measured on CPUs
        gpu.setattr(tf.config, "list_physical_devices",
                    lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
        assert not backend.native_bfloat16(flags.format("avx512_bf16"))
    monkeypatch.setattr(backend, "onednn_state", lambda: "off")  # Eigen's kernels: emulated
    assert not backend.native_bfloat16(flags.format("avx512_bf16"))

    auto = RECIPES["default"].replace(precision="auto")
    for native, precision in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(backend, "native_bfloat16", lambda cpuinfo=None: native)
        assert resolve_precision(auto).precision == precision
        assert resolve_precision(auto.replace(precision="float32")).precision == "float32"
    with pytest.raises(ValueError, match="precision"):
        build_model(RECIPES["default"].replace(precision="float16"))
