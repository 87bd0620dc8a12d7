"""Model definitions. Builds Keras models from a Config; touches no files.

Every model takes raw pixels (float32, 0-255, shape (28, 28, 1)) and returns class
probabilities. Augmentation (active only in training) runs on raw pixels, so the constant fill
of rotations and shifts is 0 = background; then a Rescaling layer applies the normalisation
statistics of the training split. The statistics therefore live inside model.keras, and no
caller can normalise test data by its own statistics (the tutorial's bug).
"""

from __future__ import annotations

import math

from .backend import keras
from .config import Config, check_choices, pen_style_names
from .data import N_CLASSES
from .images import STRONG_INK
from .novelty import FEATURE_MAPS

layers = keras.layers

INPUT_SHAPE = (28, 28, 1)


# How another pen or scanner than MNIST's would have made a digit (raw pixels, ink bright):
# strokes 2 or 4 px thicker (a marker: 3x3 or 5x5 maximum filter), or the digit scanned at low
# resolution (averaged down to 10 or 14 px, enlarged back with bilinear interpolation: blocky,
# blurred strokes), or a thick pen scanned at 12 px.
def _thicker(x, px: int):
    """The maximum over a (px + 1)-square window, as max-pooling with stride 1 and "same"
    padding computes it, taken as maxima of shifted copies along rows, then columns (a square
    window's maximum is separable): the same values, with RandomPen's six styles ~0.3 ms
    faster per batch of 128 on 2 cores (1.12 -> 0.81 ms; bench/README.md, "Thicker strokes as
    shifted maxima"). Raw pixels are >= 0, so a zero border changes no maximum."""
    return _max_along(_max_along(x, px, axis=1), px, axis=2)


def _max_along(x, px: int, axis: int):
    """The maximum over px + 1 neighbours along `axis` of NHWC maps, "same" padding (px // 2
    before, the rest after) with zeros."""
    n = x.shape[axis]
    padding = [[0, 0]] * 4
    padding[axis] = [px // 2, px - px // 2]
    padded = keras.ops.pad(x, padding)
    before = (slice(None),) * axis  # the axes in front of `axis`, whole
    out = padded[before + (slice(0, n),)]
    for i in range(1, px + 1):
        out = keras.ops.maximum(out, padded[before + (slice(i, i + n),)])
    return out


def _scanned_at(x, size: int):
    ops = keras.ops
    return ops.image.resize(ops.image.resize(x, (size, size), interpolation="area"),
                            INPUT_SHAPE[:2], interpolation="bilinear")


def _filling_the_box(x, box: float = 20.0):
    """Each digit stretched to fill a `box` px square at the centre, as scans normalised to a
    fixed box without keeping the aspect ratio store them (UCI optdigits, USPS): a 1 becomes
    a wide bar. Its box is the ink that reaches 15% of the image's peak, as a reframed CSV
    row's is measured (images.STRONG_INK)."""
    ops = keras.ops
    height, width = INPUT_SHAPE[:2]
    peak = ops.max(x, axis=(1, 2, 3))[:, None, None]
    ink = ops.cast(x[..., 0] > STRONG_INK * peak, "float32")

    def extent(profile, n):  # first and last inked index along one axis, as float32
        first = ops.cast(ops.argmax(profile, axis=1), "float32")
        last = n - 1 - ops.cast(ops.argmax(ops.flip(profile, axis=1), axis=1), "float32")
        return first, last

    top, bottom = extent(ops.max(ink, axis=2), height)
    left, right = extent(ops.max(ink, axis=1), width)
    # output pixel (col, row) reads input ((col - c) * sx + centre_x, (row - c) * sy + centre_y)
    sx, sy = (right - left + 1) / box, (bottom - top + 1) / box
    cx, cy = (width - 1) / 2, (height - 1) / 2
    zero = ops.zeros_like(sx)
    transform = ops.stack([sx, zero, (left + right) / 2 - cx * sx,
                           zero, sy, (top + bottom) / 2 - cy * sy, zero, zero], axis=1)
    return ops.image.affine_transform(x, transform, interpolation="bilinear",
                                      fill_mode="constant", fill_value=0.0)


PEN_STYLES = {
    "thick": lambda x: _thicker(x, 2),
    "marker": lambda x: _thicker(x, 4),
    "low10": lambda x: _scanned_at(x, 10),
    "low14": lambda x: _scanned_at(x, 14),
    "thick-low12": lambda x: _scanned_at(_thicker(x, 2), 12),
    "filling": _filling_the_box,
    "filling-low10": lambda x: _scanned_at(_filling_the_box(x), 10),
}


def _count(n, share: float):
    """floor(n * share): a Python int when the batch size is known (static shapes, as JAX
    needs), else a tensor (TensorFlow's graph, whose last batch may be smaller)."""
    if isinstance(n, int):
        return int(n * share + 1e-9)
    ops = keras.ops
    return ops.cast(ops.floor(ops.cast(n, "float32") * share + 1e-6), "int32")


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomPen(layers.Layer):
    """Training only: a `rate` share of the images as another pen or scanner than MNIST's
    would make them, an equal part of that share in each of `styles` (names in PEN_STYLES).
    Raw pixels in and out; identity at inference."""

    # styles' default: the three that models saved before `styles` existed were trained with
    def __init__(self, rate: float, seed: int | None = None,
                 styles: str = "thick,low10,low14", **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed, self.styles = rate, seed, styles
        self._styles = pen_style_names(styles)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate <= 0:
            return x
        ops = keras.ops
        # The batch in a random order; style i redraws the i-th run of rate/len(styles) of it
        # and only those images (drawing the whole batch once per style and keeping a share
        # cost 5.3 ms of a ~40 ms training step with six styles on 2 cores).
        n = ops.shape(x)[0]
        order = keras.random.shuffle(ops.arange(n), seed=self.seed_generator)
        step = self.rate / len(self._styles)
        bounds = [_count(n, step * i) for i in range(len(self._styles) + 1)]
        styled = ops.concatenate(
            [PEN_STYLES[name](ops.take(x, order[bounds[i]:bounds[i + 1]], axis=0))
             for i, name in enumerate(self._styles)], axis=0)
        return ops.scatter_update(x, ops.expand_dims(order[:bounds[-1]], 1), styled)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "styles": self.styles}


FUSED_DTYPES = ("float32", "bfloat16")  # maps the kernel takes (bfloat16: mixed precision)


@keras.saving.register_keras_serializable(package="digit_recognizer")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization, computed on TensorFlow by its one fused kernel
    (FusedBatchNormV3, oneDNN's when oneDNN is on; tf.keras's before Keras 3) rather than as
    moments and normalisation in separate element-wise passes: the same function, variables
    and moving statistics, with training steps of `default` 1.14x and `best` 1.06-1.13x faster
    on 2 cores (bench/README.md, "Batch norm in one fused kernel"). Other backends, and what
    the kernel lacks (a mask, renorm, synchronised statistics, no scale or no centre, an axis
    other than the last), run Keras's own code."""

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        if (keras.backend.backend() != "tensorflow" or mask is not None or self.renorm
                or self.synchronized or not (self.scale and self.center)
                or self.axis not in (-1, rank - 1) or rank not in (2, 4)
                or keras.backend.standardize_dtype(inputs.dtype) not in FUSED_DTYPES):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # The kernel takes NHWC maps; a dense layer's (n, c) are n maps of 1x1.
        x = inputs if rank == 4 else tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            # The kernel returns the unbiased variance (n - 1); Keras keeps the biased one (n).
            n = tf.cast(tf.size(x) // x.shape[-1], variance.dtype)
            variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, is_training=False)
        return y if rank == 4 else tf.reshape(y, tf.shape(inputs))


def image_data_generator_move(x, u, rotation: float, zoom: float, shift: float):
    """Images `x` (n, h, w, 1) moved as Keras 2's ImageDataGenerator.random_transform and
    apply_affine_transform move them, given their uniform draws `u` (n, 5) in [-1, 1]: a
    rotation by u0 * `rotation` degrees, shifts of u1 * `shift` * h rows and u2 * `shift` * w
    columns, zooms 1 + u3 * `zoom` of the rows and 1 + u4 * `zoom` of the columns (> 1 reads a
    larger area: the digit shrinks), composed as rotation @ shift @ zoom about (h/2 + 0.5,
    w/2 + 0.5), the centre that Keras 2's transform_matrix_offset_center takes (half a pixel
    off the true one, kept: this reproduces the tutorial); one bilinear resampling, the border
    extended ("nearest")."""
    ops = keras.ops
    height, width = x.shape[1], x.shape[2]
    u = ops.convert_to_tensor(u, "float32")
    theta = u[:, 0] * (rotation * math.pi / 180.0)
    tx, ty = u[:, 1] * (shift * height), u[:, 2] * (shift * width)
    zx, zy = 1.0 + u[:, 3] * zoom, 1.0 + u[:, 4] * zoom
    cos, sin = ops.cos(theta), ops.sin(theta)
    # In (row, col) coordinates, input = M @ output + offset:
    m00, m01, m10, m11 = cos * zx, -sin * zy, sin * zx, cos * zy
    o_row, o_col = height / 2 + 0.5, width / 2 + 0.5
    off_row = cos * tx - sin * ty + o_row - (m00 * o_row + m01 * o_col)
    off_col = sin * tx + cos * ty + o_col - (m10 * o_row + m11 * o_col)
    zeros = ops.zeros_like(cos)
    # ... and in affine_transform's (x = col, y = row) order, output point -> input point:
    transforms = ops.stack([m11, m10, off_col, m01, m00, off_row, zeros, zeros], axis=1)
    return ops.image.affine_transform(x, transforms, interpolation="bilinear",
                                      fill_mode="nearest")


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomAffine(layers.Layer):
    """Training only: ImageDataGenerator(rotation_range=`rotation`, zoom_range=`zoom`,
    width_shift_range=`shift`, height_shift_range=`shift`) as the tutorial trains with it: per
    image one affine map and one bilinear resampling (image_data_generator_move). Raw pixels in
    and out; identity at inference."""

    def __init__(self, rotation: float, zoom: float, shift: float, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift, self.seed = rotation, zoom, shift, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        u = keras.random.uniform((keras.ops.shape(x)[0], 5), -1.0, 1.0,
                                 seed=self.seed_generator)
        return image_data_generator_move(x, u, self.rotation, self.zoom, self.shift)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom,
                "shift": self.shift, "seed": self.seed}


def build_augmentation(config: Config) -> keras.Sequential:
    """Random rotation/zoom/shift (training only) as `config.affine` says: Keras's three layers
    or the tutorial's ImageDataGenerator (RandomAffine), after RandomPen when the recipe asks
    for other pens (`pen` > 0). A factor of 0 adds no Keras layer: they resample every image
    at any factor, 0 included (~2 ms per batch of 128 each on 2 cores, bench/README.md)."""
    seed = config.seed
    parts = [RandomPen(config.pen, seed=seed + 3, styles=config.pen_styles)] \
        if config.pen > 0 else []
    if config.affine == "image_data_generator":
        if config.rotation or config.zoom or config.shift:
            parts.append(RandomAffine(config.rotation, config.zoom, config.shift, seed=seed))
    else:
        if config.rotation:
            parts.append(layers.RandomRotation(config.rotation / 360.0, fill_mode="constant",
                                               fill_value=0.0, seed=seed))
        if config.zoom:
            parts.append(layers.RandomZoom(config.zoom, fill_mode="constant", fill_value=0.0,
                                           seed=seed + 1))
        if config.shift:
            parts.append(layers.RandomTranslation(config.shift, config.shift,
                                                  fill_mode="constant", fill_value=0.0,
                                                  seed=seed + 2))
    return keras.Sequential(parts or [layers.Identity()], name="augment")


def _tutorial_body(x, config: Config):
    """The tutorial's CNN: three pairs of 3x3 convs (32,32 / 64,32 / 64,64), first of each pair
    'same', second 'valid', each pair followed by 2x2 max-pooling and dropout; dense 256; softmax.
    """
    for first, second in ((32, 32), (64, 32), (64, 64)):
        x = layers.Conv2D(first, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(second, 3, padding="valid", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(config.dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return x


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, padding: str = "same"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = FusedBatchNormalization(momentum=0.9)(x)
    return layers.Activation("relu")(x)


def _compact_body(x, config: Config):
    """Small batch-normalised CNN sized for 2 CPU cores: one conv per resolution, pooled early,
    few channels at 28x28 (where a conv costs 4x what it costs at 14x14).

    28x28: conv w -> pool -> 14x14: conv 2w -> pool -> 7x7: conv 4w -> pool -> flatten 3x3x4w,
    with `depth` convs at 14x14 and 7x7. About 15 MFLOPs per image forward at w=32, depth 1
    (the tutorial's CNN: 25).
    """
    w = config.width
    for stage, filters in enumerate((w, 2 * w, 4 * w)):
        # `depth` convs per stage after the first (28x28 stays at one: it is the costly one)
        for _ in range(1 if stage == 0 else config.depth):
            x = _conv_bn(x, filters)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    return layers.Dropout(config.dropout)(x)


def _quick_body(x, config: Config):
    """tuomaso/train_mnist_fast's net with batch norm, sized for seconds on 2 CPU cores:
    5x5 conv w (valid) -> pool -> 3x3 conv width2 (valid; 0: 4w/3) -> pool -> dense 256. About
    1.8 MFLOPs per image forward at 16 -> 32 channels (the compact net: 15), so an epoch of 38k
    rows takes seconds.

    Batch norm on TensorFlow's CPU kernels costs more than these small convs themselves: with
    `conv_norm="after_pool"` it normalises the pooled maps (a quarter of the positions), which
    cut an epoch of `quick` from 6.2 to 3.8 s on 2 cores (no batch norm at all: 3.1 s);
    "after_last_pool" normalises the second stage only.
    """
    w = config.width
    norm = config.conv_norm  # one of config.CHOICES["conv_norm"], checked by build_model
    for stage, (filters, kernel) in enumerate(((w, 5), (config.width2 or w + w // 3, 3))):
        normalised = norm in ("before_pool", "after_pool") or (norm == "after_last_pool"
                                                                and stage == 1)
        x = layers.Conv2D(filters, kernel, padding="valid", use_bias=not normalised)(x)
        if norm == "before_pool":  # conv -> BN -> ReLU -> pool
            x = FusedBatchNormalization(momentum=0.9)(x)
            x = layers.Activation("relu")(x)
            x = layers.MaxPooling2D(2)(x)
        else:  # conv -> pool [-> BN] -> ReLU
            x = layers.MaxPooling2D(2)(x)
            if normalised:
                x = FusedBatchNormalization(momentum=0.9)(x)
            x = layers.Activation("relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, use_bias=False)(x)
    x = FusedBatchNormalization(momentum=0.9)(x)
    x = layers.Activation("relu")(x)
    return layers.Dropout(config.dropout)(x)


def _strided_body(x, config: Config):
    """Chris Deotte's Kaggle MNIST net (the members of his 99.75% ensemble): per stage two
    3x3 convs (valid) and a 5x5 stride-2 conv in place of pooling, dropout after each stage;
    then a 4x4 conv to a 1x1 map of 4w channels. 28 -> 26 -> 24 -> 12 (w channels) -> 10 -> 8
    -> 4 (2w) -> 1 (4w). Batch norm after every conv. About 30 MFLOPs per image at w=32.
    The second stage's maps are where the no-digit check looks (novelty.FEATURE_MAPS).
    """
    w = config.width
    for filters in (w, 2 * w):
        x = _conv_bn(x, filters, padding="valid")
        x = _conv_bn(x, filters, padding="valid")
        x = _conv_bn(x, filters, kernel=5, strides=2)
        x = layers.Dropout(config.dropout, name=FEATURE_MAPS if filters == 2 * w else None)(x)
    x = _conv_bn(x, 4 * w, kernel=4, padding="valid")
    x = layers.Flatten()(x)
    return layers.Dropout(config.dropout)(x)


ARCHITECTURES = {
    "tutorial": _tutorial_body,
    "compact": _compact_body,
    "quick": _quick_body,
    "strided": _strided_body,
}


def build_model(config: Config, pixel_mean: float = 33.0, pixel_std: float = 78.0,
                with_augmentation: bool = True) -> keras.Model:
    """The network for `config`, normalising inputs by the given training-split statistics
    (pixel units, 0-255). Uncompiled: training chooses the optimizer and schedule.
    `with_augmentation=False` leaves the recipe's augmentation out (training then applies
    build_augmentation in its input pipeline)."""
    check_choices(config)  # the names a recipe file is checked against, before any layer
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = build_augmentation(config)(inputs) if config.augment and with_augmentation else inputs
    # (x - mean) / std as one affine layer: x * (1/std) + (-mean/std)
    x = layers.Rescaling(1.0 / pixel_std, offset=-pixel_mean / pixel_std, name="normalise")(x)
    # The network's layers take the recipe's precision; the input's normalisation and the
    # softmax stay in float32 (mixed precision's usual rule for the last layer).
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(config).precision)
    try:
        x = ARCHITECTURES[config.architecture](x, config)
    finally:
        keras.config.set_dtype_policy(previous)
    outputs = layers.Dense(N_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"digits_{config.architecture}")


def resolve_precision(config: Config) -> Config:
    """`config` with precision "auto" made "mixed_bfloat16" or "float32" for this machine."""
    if config.precision != "auto":
        return config
    from .backend import native_bfloat16

    return config.replace(precision="mixed_bfloat16" if native_bfloat16() else "float32")


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` (built in any precision) with every layer computing in float32 and the same
    weights (mixed precision keeps its variables in float32): what a run trained in bfloat16
    saves, so that inference, exports and the no-digit check compute as for any other run."""
    def in_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: in_float32(value) for key, value in node.items()}
        return [in_float32(value) for value in node] if isinstance(node, list) else node

    copy = model.__class__.from_config(in_float32(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def forward_flops(model: keras.Model) -> int:
    """Forward multiply-adds x 2 per image of the conv and dense layers (the FLOPs that count)."""
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += 2 * h * w * c_out * kh * kw * c_in
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
