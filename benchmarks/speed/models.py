"""Models of the speed benchmark, in Flax NNX and, for the PyTorch comparison, in torch.

The small models classify 28×28 grey images into 10 classes (Fashion-MNIST when the Debian package
``dataset-fashion-mnist`` is installed, a synthetic stand-in otherwise), so all of them train on
the same batches; each one exists in both frameworks with the same layers and shapes (torch is
imported only by :func:`torch_model`, so this module works without it). The two large ones, a
ResNet-50 and a BERT-base encoder (the sizes of the paper's speed claim), train on synthetic
batches of their own inputs and have no torch version.
"""

import gzip
import itertools
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.tasks.digits_mlp import MLP

FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
IMAGE_SIZE = 28
NUM_CLASSES = 10


class CNN(nnx.Module):
    """conv 3×3 → conv 3×3 stride 2 → conv 3×3 stride 2 → global average pool → dense, ReLU.

    With the default ``width`` (32, 64, 64 channels) this is the small CNN of ``ANCHORS.md``.
    """

    def __init__(self, width: int = 32, *, rngs: nnx.Rngs):
        channels = (1, width, 2 * width, 2 * width)
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, (3, 3), strides=s, padding="SAME", rngs=rngs)
                for a, b, s in zip(channels[:-1], channels[1:], (1, 2, 2), strict=True)
            ]
        )
        self.head = nnx.Linear(channels[-1], NUM_CLASSES, rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return self.head(x.mean(axis=(1, 2)))


class EncoderBlock(nnx.Module):
    """Pre-LayerNorm transformer encoder block: self-attention, then a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.attention_norm = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            heads, dim, decode=False, keep_rngs=False, rngs=rngs
        )
        self.mlp_norm = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.mlp_in = nnx.Linear(dim, mlp_dim, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_dim, dim, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(self.attention_norm(x))
        hidden = nnx.gelu(self.mlp_in(self.mlp_norm(x)), approximate=False)
        return x + self.mlp_out(hidden)


class Transformer(nnx.Module):
    """A small transformer encoder reading an image as a sequence of its 28 pixel rows.

    Each block's MLP is twice as wide as the model.
    """

    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4, *, rngs: nnx.Rngs):
        self.embed = nnx.Linear(IMAGE_SIZE, dim, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (IMAGE_SIZE, dim)))
        self.blocks = nnx.List([EncoderBlock(dim, heads, 2 * dim, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(dim, NUM_CLASSES, rngs=rngs)

    def __call__(self, x):
        x = self.embed(x) + self.position[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(axis=1))


class SpeedModel(NamedTuple):
    """A model of the benchmark and how it is applied to a batch of NHWC images.

    Attributes:
      name: key in the results.
      description: one line for the tables.
      make_model: ``nnx.Rngs -> nnx.Module``.
      logits: ``(model, images) -> logits`` in training mode, for ``(batch, 28, 28, 1)`` images.
      torch_spec: ``(kind, kwargs)`` for :func:`torch_model`, the same architecture in torch;
        None where there is none.
      load_inputs: ``count -> (batch, source)``, ``count`` training examples ``{"x", "y"}`` and
        where they come from; None for the images of :func:`load_images`.
    """

    name: str
    description: str
    make_model: Callable[[nnx.Rngs], nnx.Module]
    logits: Callable[[nnx.Module, jax.Array], jax.Array]
    torch_spec: tuple[str, dict[str, Any]] | None
    load_inputs: Callable[[int], tuple[dict[str, np.ndarray], str]] | None = None

    def inputs(self, count: int) -> tuple[dict[str, np.ndarray], str]:
        """``count`` training examples of this model and their source."""
        return (self.load_inputs or load_images)(count)


def mlp(width: int = 256) -> SpeedModel:
    """The MLP 784-``width``-``width``-10 of ``ANCHORS.md`` (256 wide)."""
    features = (IMAGE_SIZE * IMAGE_SIZE, width, width, NUM_CLASSES)
    return SpeedModel(
        name="mlp" if width == 256 else f"mlp{width}",
        description=f"MLP {'-'.join(map(str, features))}",
        make_model=lambda rngs: MLP(features, rngs=rngs),
        logits=lambda model, x: model(x.reshape(x.shape[0], -1)),
        torch_spec=("mlp", {"features": features}),
    )


def resnet(num_filters: int = 8) -> SpeedModel:
    """ResNet-8 of the ResNet example's CPU configuration (``examples/resnet/configs/cpu.py``).

    A CIFAR-style network with BatchNorm; ``num_filters`` is the first stage's width (8 there, 16
    in the paper's CIFAR networks).
    """
    from examples.resnet import models

    widths = "-".join(str(num_filters * 2**stage) for stage in range(3))
    return SpeedModel(
        name="resnet" if num_filters == 8 else f"resnet{num_filters}",
        description=f"ResNet-8 ({widths} filters, BatchNorm)",
        make_model=lambda rngs: models.ResNet8(
            num_classes=NUM_CLASSES, in_channels=1, num_filters=num_filters, rngs=rngs
        ),
        logits=lambda model, x: model(x, train=True),
        torch_spec=("resnet", {"stage_sizes": (1, 1, 1), "num_filters": num_filters}),
    )


def cnn(width: int = 32) -> SpeedModel:
    """The small CNN of ``ANCHORS.md``, on which its PyTorch figures were measured."""
    return SpeedModel(
        name="cnn",
        description=f"CNN conv{width}-conv{2 * width}/2-conv{2 * width}/2-pool-dense10",
        make_model=lambda rngs: CNN(width, rngs=rngs),
        logits=lambda model, x: model(x),
        torch_spec=("cnn", {"width": width}),
    )


def transformer(dim: int = 64, depth: int = 2) -> SpeedModel:
    """A 2-block pre-LN transformer encoder (64 wide, 4 heads) over the 28 image rows."""
    return SpeedModel(
        name="transformer",
        description=f"Transformer encoder, {depth} blocks, dim {dim}, 4 heads, 28 tokens",
        make_model=lambda rngs: Transformer(dim, depth, rngs=rngs),
        logits=lambda model, x: model(x[..., 0]),
        torch_spec=("transformer", {"dim": dim, "depth": depth}),
    )


def resnet50() -> SpeedModel:
    """ResNet-50 (bottleneck blocks; 23.5 M parameters with 10 classes) with the CIFAR stem, on
    28×28 images."""
    from examples.resnet import models

    return SpeedModel(
        name="resnet50",
        description="ResNet-50 (CIFAR stem, BatchNorm, 23.5 M parameters)",
        make_model=lambda rngs: models.ResNet50(
            num_classes=NUM_CLASSES, in_channels=1, small_inputs=True, rngs=rngs
        ),
        logits=lambda model, x: model(x, train=True),
        torch_spec=None,
    )


def bert_base(length: int = 128) -> SpeedModel:
    """BERT-base (12 layers, 768 wide, 110 M parameters) classifying random token sequences.

    No dropout (the call gets no ``rngs``), so every loss evaluation of a step is the same
    function, as in the BERT example's training step.
    """
    from examples.bert import models

    def logits(model, ids):
        return model(ids, jnp.zeros_like(ids), jnp.ones_like(ids))

    return SpeedModel(
        name="bert_base",
        description=f"BERT-base encoder, {length} tokens, mean pooling",
        make_model=lambda rngs: models.BertBase(num_classes=2, rngs=rngs),
        logits=logits,
        torch_spec=None,
        load_inputs=lambda count: load_tokens(count, length),
    )


def tiny() -> SpeedModel:
    """An MLP small enough for a smoke test."""
    return mlp(width=16)


def classification_loss(spec: SpeedModel, model: nnx.Module, batch: dict) -> jax.Array:
    """Mean softmax cross-entropy of the model on ``batch = {"x": images, "y": labels}``."""
    logits = spec.logits(model, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def load_images(count: int, seed: int = 0) -> tuple[dict[str, np.ndarray], str]:
    """``count`` training images in NHWC float32 in [0, 1] with int32 labels, and their source.

    Fashion-MNIST's training split when the Debian package is installed; otherwise random images
    whose labels a fixed random linear map decides, so that the loss still falls and a line
    search still has a trajectory to follow.
    """
    images_path = FASHION_MNIST / "train-images-idx3-ubyte.gz"
    labels_path = FASHION_MNIST / "train-labels-idx1-ubyte.gz"
    if images_path.exists() and labels_path.exists():
        with gzip.open(images_path) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16)
        with gzip.open(labels_path) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        order = np.random.default_rng(seed).permutation(len(labels))[:count]
        x = images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)[order].astype(np.float32) / 255.0
        return {"x": x, "y": labels[order].astype(np.int32)}, "fashion-mnist"
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(count, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    teacher = rng.normal(size=(IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES))
    y = np.argmax((x.reshape(count, -1) - 0.5) @ teacher, axis=1).astype(np.int32)
    return {"x": x, "y": y}, "synthetic"


def load_tokens(
    count: int, length: int, vocab_size: int = 30522, seed: int = 0
) -> tuple[dict[str, np.ndarray], str]:
    """``count`` random token sequences of ``length`` (ids past BERT's special tokens) with
    random binary labels: a step costs what a real batch of that shape costs."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab_size, size=(count, length), dtype=np.int32)
    return {"x": ids, "y": rng.integers(0, 2, size=count, dtype=np.int32)}, "synthetic tokens"


def torch_model(spec: SpeedModel) -> Any:
    """``spec``'s architecture as a ``torch.nn.Module`` (NCHW images in, logits out)."""
    from torch import nn

    if spec.torch_spec is None:
        raise ValueError(f"{spec.name} has no torch version")
    kind, kwargs = spec.torch_spec
    if kind == "mlp":
        features = kwargs["features"]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(features[:-1]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(features[-2], features[-1]))
    if kind == "cnn":
        w = kwargs["width"]
        return nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * w, NUM_CLASSES),
        )
    if kind == "transformer":
        return _torch_transformer(**kwargs)
    if kind == "resnet":
        return _torch_resnet(**kwargs)
    raise ValueError(f"no torch version of {kind!r}")


def _torch_transformer(dim: int, depth: int) -> Any:
    import torch
    from torch import nn

    class RowTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(IMAGE_SIZE, dim)
            self.position = nn.Parameter(0.02 * torch.randn(IMAGE_SIZE, dim))
            layer = nn.TransformerEncoderLayer(
                dim, 4, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, NUM_CLASSES)

        def forward(self, x):
            x = self.encoder(self.embed(x[:, 0]) + self.position)
            return self.head(self.norm(x).mean(dim=1))

    return RowTransformer()


def _torch_resnet(stage_sizes: tuple[int, ...], num_filters: int) -> Any:
    """The ResNet example's CIFAR-style network (ResNet v1.5 blocks, BatchNorm) in torch."""
    from torch import nn

    def conv_bn(cin, cout, kernel, stride):
        conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(cout))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.first = conv_bn(cin, cout, 3, stride)
            self.second = conv_bn(cout, cout, 3, 1)
            same = cin == cout and stride == 1
            self.shortcut = nn.Identity() if same else conv_bn(cin, cout, 1, stride)

        def forward(self, x):
            y = self.second(self.first(x).relu())
            return (y + self.shortcut(x)).relu()

    layers: list[nn.Module] = [conv_bn(1, num_filters, 3, 1), nn.ReLU()]
    features = num_filters
    for stage, blocks in enumerate(stage_sizes):
        for block in range(blocks):
            width = num_filters * 2**stage
            layers.append(Block(features, width, 2 if stage and not block else 1))
            features = width
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, NUM_CLASSES)]
    return nn.Sequential(*layers, *pool)


def jax_input(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """A batch placed on the default device."""
    return {"x": jnp.asarray(batch["x"]), "y": jnp.asarray(batch["y"])}
