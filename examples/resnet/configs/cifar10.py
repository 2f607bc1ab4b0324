"""ResNet-20 on CIFAR-10 with SaLSa, 100 epochs (an accelerator run).

CIFAR-10 must be prepared as a tfds dataset first (see the README: nothing downloads at run time).
Run::

  python -m examples.resnet.main --config=cifar10 --workdir=/tmp/resnet20_cifar10
"""

import dataclasses

from examples.resnet.configs import default


def get_config() -> default.Config:
    return dataclasses.replace(
        default.get_config(), dataset="cifar10", model="ResNet20", num_epochs=100
    )
