"""A seconds-long run for tests: a random two-layer, 32-wide BERT on a few short examples.

Run (from the repository root)::

  python -m examples.bert.main --config=tiny --workdir=/tmp/bert_tiny
"""

import dataclasses

from examples.bert.configs import default


def get_config() -> default.Config:
    return dataclasses.replace(
        default.get_config(),
        model="_BertTiny",
        pretrained=False,
        train_limit=64,
        eval_limit=40,
        buckets=(32,),
        batch_size=8,
        eval_batch_size=16,
        num_epochs=2,
        log_every=2,
        progress_bar=False,
    )
