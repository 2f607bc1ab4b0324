"""Default: ResNet-20 on Fashion-MNIST (from the Debian package) with SaLSa, 10 epochs.

The base of the other configs. Sized for an accelerator; on a CPU use ``cpu``. Run::

  python -m examples.resnet.main --config=default --workdir=/tmp/resnet20_fmnist
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; ``main.py --set key=value`` overrides a field."""

    # Data: a tfds name in examples.resnet.input_pipeline.DATASETS; data_dir None is tfds's
    # default (~/tensorflow_datasets). Nothing is downloaded: see the README for preparing data.
    dataset: str = "fashion_mnist_debian"
    data_dir: str | None = None
    augment: bool = True  # random crops and flips of the training images
    # Model: a name in examples.resnet.models.MODELS; num_filters overrides its first-stage width.
    model: str = "ResNet20"
    num_filters: int | None = None
    # Global batch sizes (over all devices; the device count must divide them).
    batch_size: int = 128
    eval_batch_size: int = 500
    num_epochs: int = 10
    num_train_steps: int | None = None  # if set, replaces num_epochs
    # Optimizer: a name of examples.common.optimizers.create_optimizer ("salsa", "salsa_sgd",
    # "sls", "adam", "sgd", or any optax optimizer), its learning rate (for a line search: the
    # initial step size; None: the default) and its other keyword arguments.
    optimizer: str = "salsa"
    learning_rate: float | None = None
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    clip_norm: float | None = None
    # A multiplier of every update (examples.common.optimizers.schedule_multiplier): 'constant',
    # or 'linear' (warm-up over warmup_fraction of the steps, then linear decay to zero). A line
    # search still tests the unscheduled step.
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    # Loop.
    seed: int = 0
    log_every: int = 50
    progress_bar: bool = True


def get_config() -> Config:
    return Config()
