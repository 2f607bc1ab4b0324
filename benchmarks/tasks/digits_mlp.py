"""A multilayer perceptron on scikit-learn's UCI digits (1 797 images of 8×8 pixels, 10 classes)."""

import functools
import itertools

import numpy as np
from flax import nnx

from benchmarks.tasks import base


class MLP(nnx.Module):
    """ReLU perceptron ``features[0] -> ... -> features[-1]`` (logits)."""

    def __init__(self, features: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(features)]
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nnx.relu(layer(x))
        return self.layers[-1](x)


DigitsMLP = functools.partial(MLP, (64, 128, 128, 10))


def load_data() -> base.Data:
    """1 257 train / 180 validation / 360 test images, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    arrays = {"x": (digits.data / 16.0).astype(np.float32), "y": digits.target.astype(np.int32)}
    rest, test = base.split_off(arrays, 360, seed=0)
    train, val = base.split_off(rest, 180, seed=1)
    return base.Data(train, val, test)


def task() -> base.Task:
    quick = base.Budget(steps=600, batch_size=64, seeds=(0, 1, 2))
    return base.Task(
        name="digits_mlp",
        description="MLP 64-128-128-10 on UCI digits (sklearn)",
        load_data=load_data,
        make_model=lambda rngs: DigitsMLP(rngs=rngs),
        loss=base.classification_loss,
        evaluate=base.classification_evaluate,
        metric="accuracy",
        higher_is_better=True,
        budgets={
            "quick": quick,
            "cpu": quick,
            "full": base.Budget(steps=2000, batch_size=64, seeds=(0, 1, 2, 3, 4)),
        },
    )
