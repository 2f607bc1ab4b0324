"""ResNet-50 on ImageNet (ILSVRC 2012) with SaLSa, 90 epochs, batch 1024 (a multi-accelerator run).

ImageNet must be prepared as a tfds dataset first (see the README: nothing downloads at run time).
Run::

  python -m examples.resnet.main --config=imagenet --workdir=/tmp/resnet50_imagenet

On several hosts, the same command on each, with the flags of the README's *Several hosts*.
"""

import dataclasses

from examples.resnet.configs import default


def get_config() -> default.Config:
    return dataclasses.replace(
        default.get_config(),
        dataset="imagenet2012",
        model="ResNet50",
        # Powers of two: the device count of a multi-host GPU or TPU run divides them.
        batch_size=1024,
        eval_batch_size=1024,
        num_epochs=90,
        log_every=100,
    )
