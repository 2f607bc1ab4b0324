"""A 1-D convolutional network on MNIST-1D (Greydanus 2020), generated offline by ``mnist1d``."""

import numpy as np
from flax import nnx

from benchmarks.tasks import base


class CNN1D(nnx.Module):
    """The MNIST-1D paper's CNN: three strided 1-D convolutions, then a linear classifier."""

    def __init__(self, channels: int = 25, length: int = 40, classes: int = 10, *, rngs: nnx.Rngs):
        conv = lambda i, k: nnx.Conv(i, channels, (k,), strides=(2,), padding=1, rngs=rngs)
        self.convs = nnx.List([conv(1, 5), conv(channels, 3), conv(channels, 3)])
        for _ in range(3):
            length = (length - 1) // 2 + 1 if length > 1 else 1
        self.head = nnx.Linear(channels * length, classes, rngs=rngs)

    def __call__(self, x):
        x = x[..., None]
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return self.head(x.reshape(x.shape[0], -1))


def load_data() -> base.Data:
    """3 500 train / 500 validation / 1 000 test sequences of length 40, generated offline."""
    import mnist1d

    raw = mnist1d.data.make_dataset(mnist1d.get_dataset_args())
    train = {"x": raw["x"].astype(np.float32), "y": raw["y"].astype(np.int32)}
    test = {"x": raw["x_test"].astype(np.float32), "y": raw["y_test"].astype(np.int32)}
    train, val = base.split_off(train, 500, seed=0)
    return base.Data(train, val, test)


def task() -> base.Task:
    quick = base.Budget(steps=1500, batch_size=128, seeds=(0, 1, 2))
    return base.Task(
        name="mnist1d_cnn",
        description="CNN (3 conv1d, 25 channels) on MNIST-1D",
        load_data=load_data,
        make_model=lambda rngs: CNN1D(rngs=rngs),
        loss=base.classification_loss,
        evaluate=base.classification_evaluate,
        metric="accuracy",
        higher_is_better=True,
        budgets={
            "quick": quick,
            "cpu": quick,
            "full": base.Budget(steps=6000, batch_size=128, seeds=(0, 1, 2, 3, 4)),
        },
    )
