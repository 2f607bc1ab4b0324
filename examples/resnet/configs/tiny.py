"""A few steps of a tiny ResNet, for tests (under ``tfds.testing.mock_data``)."""

import dataclasses

from examples.resnet.configs import default


def get_config() -> default.Config:
    return dataclasses.replace(
        default.get_config(),
        model="_ResNetTiny",
        batch_size=8,
        eval_batch_size=8,
        num_epochs=1,
        num_train_steps=4,
        log_every=2,
        progress_bar=False,
    )
