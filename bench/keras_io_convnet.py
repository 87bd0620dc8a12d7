"""Baseline: keras-io's "Simple MNIST convnet" (examples/vision/mnist_convnet.py), re-implemented.

Two 3x3 conv + max-pool blocks (32, 64 filters), flatten, dropout 0.5, dense softmax; Adam,
batch 128, 15 epochs, pixels scaled by 1/255, 10% validation split. Used only by the benchmark.
"""

from __future__ import annotations

from digit_recognizer.backend import keras

layers = keras.layers

EPOCHS = 15
BATCH_SIZE = 128


def build_keras_io_convnet() -> keras.Model:
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Rescaling(1.0 / 255),  # keras-io divides the arrays by 255 before fit()
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ], name="keras_io_mnist_convnet")


def compile_keras_io_convnet(model: keras.Model) -> keras.Model:
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model
