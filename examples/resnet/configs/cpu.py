"""The main job: a small CIFAR-style ResNet on Fashion-MNIST with SaLSa's defaults, on a CPU.

Needs only the Debian package ``dataset-fashion-mnist``. Run (from the repository root)::

  python -m examples.resnet.main --config=cpu --workdir=/tmp/resnet_cpu

See the README for the time it takes on 2 CPU cores and the accuracy to expect.
"""

import dataclasses

from examples.resnet.configs import default


def get_config() -> default.Config:
    return dataclasses.replace(
        default.get_config(), model="ResNet8", num_filters=8, num_epochs=3, log_every=20
    )
