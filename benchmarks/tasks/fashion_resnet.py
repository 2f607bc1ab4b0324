"""The CPU ResNet of ``examples/resnet`` (ResNet-8, 8 filters, BatchNorm) on Fashion-MNIST.

Data: the Debian package ``dataset-fashion-mnist`` (60 000 train / 10 000 test images), read from
its idx files; 5 000 training images are held out for validation. No augmentation, so every
optimizer sees the same batches.
"""

import gzip
import pathlib

import jax
import numpy as np
import optax
from flax import nnx

from benchmarks.tasks import base

DATA_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530  # of the training pixels in [0, 1], as in examples/resnet


def make_model(rngs: nnx.Rngs) -> nnx.Module:
    from examples.resnet import models

    return models.ResNet8(num_classes=10, in_channels=1, num_filters=8, rngs=rngs)


def _read_idx(name: str, header: int) -> np.ndarray:
    with gzip.open(DATA_DIR / name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


def load_data() -> base.Data:
    """55 000 train / 5 000 validation / 10 000 test images, normalised, shape (28, 28, 1)."""
    if not DATA_DIR.is_dir():
        raise FileNotFoundError(
            f"{DATA_DIR} is missing: `apt-get install dataset-fashion-mnist` (31 MB)."
        )

    def split(prefix):
        images = _read_idx(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
        labels = _read_idx(f"{prefix}-labels-idx1-ubyte.gz", 8)
        x = ((images.astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)
        return {"x": x, "y": labels.astype(np.int32)}

    train, val = base.split_off(split("train"), 5000, seed=0)
    return base.Data(train, val, split("t10k"))


def loss(model: nnx.Module, batch: base.Arrays, key: jax.Array) -> jax.Array:
    """Mean cross-entropy with batch statistics (BatchNorm in training mode)."""
    del key  # no dropout
    logits = model(batch["x"], train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def evaluate(model: nnx.Module, batch: base.Arrays):
    """Per-example cross-entropy and accuracy with the running BatchNorm statistics."""
    return base.classification_evaluate(lambda x: model(x, train=False), batch)


def task() -> base.Task:
    full = base.Budget(steps=2580, batch_size=64, seeds=(0, 1, 2))  # 3 epochs
    return base.Task(
        name="fashion_resnet",
        description="ResNet-8 (8 filters, BatchNorm; examples/resnet) on Fashion-MNIST",
        load_data=load_data,
        make_model=make_model,
        loss=loss,
        evaluate=evaluate,
        metric="accuracy",
        higher_is_better=True,
        budgets={
            "quick": base.Budget(steps=300, batch_size=64, seeds=(0,)),
            "cpu": full,
            "full": full,
        },
    )
