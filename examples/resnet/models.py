"""ResNet v1.5 in Flax NNX, with BatchNorm.

The ImageNet sizes (He et al., 2016; stride on the 3x3 convolution as in v1.5) and the smaller
CIFAR-style networks of the same paper (Sec. 4.2: a 3x3 stem, three stages of 16, 32, 64 filters,
no max-pooling), which train on a CPU in minutes.

>>> model = ResNet8(num_classes=10, in_channels=1, rngs=nnx.Rngs(0))
>>> model(jnp.zeros((2, 28, 28, 1)), train=False).shape
(2, 10)
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class ResNetBlock(nnx.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 and the CIFAR networks)."""

    expansion = 1

    def __init__(self, in_features: int, filters: int, strides: int, *, rngs: nnx.Rngs):
        out_features = filters * self.expansion
        self.conv1 = _conv(in_features, filters, (3, 3), strides, rngs)
        self.bn1 = _batch_norm(filters, rngs)
        self.conv2 = _conv(filters, out_features, (3, 3), 1, rngs)
        # Zero-initialised last scale: each block starts as the identity, which helps deep ResNets.
        self.bn2 = _batch_norm(out_features, rngs, scale_init=nnx.initializers.zeros)
        self.shortcut = _shortcut(in_features, out_features, strides, rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = self.bn2(self.conv2(y), use_running_average=not train)
        return nnx.relu(y + _apply_shortcut(self.shortcut, x, train))


class BottleneckResNetBlock(nnx.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convolutions with a residual connection (ResNet-50 and up)."""

    expansion = 4

    def __init__(self, in_features: int, filters: int, strides: int, *, rngs: nnx.Rngs):
        out_features = filters * self.expansion
        self.conv1 = _conv(in_features, filters, (1, 1), 1, rngs)
        self.bn1 = _batch_norm(filters, rngs)
        self.conv2 = _conv(filters, filters, (3, 3), strides, rngs)
        self.bn2 = _batch_norm(filters, rngs)
        self.conv3 = _conv(filters, out_features, (1, 1), 1, rngs)
        self.bn3 = _batch_norm(out_features, rngs, scale_init=nnx.initializers.zeros)
        self.shortcut = _shortcut(in_features, out_features, strides, rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = nnx.relu(self.bn2(self.conv2(y), use_running_average=not train))
        y = self.bn3(self.conv3(y), use_running_average=not train)
        return nnx.relu(y + _apply_shortcut(self.shortcut, x, train))


def _conv(in_features, out_features, kernel_size, strides, rngs):
    return nnx.Conv(
        in_features,
        out_features,
        kernel_size,
        strides=strides,
        padding="SAME",
        use_bias=False,  # BatchNorm follows
        kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
        rngs=rngs,
    )


def _batch_norm(features, rngs, scale_init=nnx.initializers.ones):
    # Running averages over about 10 steps, as in Flax's ImageNet example (and PyTorch's
    # default): with Flax's default of about 100, they lag behind the moving parameters and
    # evaluation with them loses accuracy.
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, scale_init=scale_init, rngs=rngs)


def _shortcut(in_features, out_features, strides, rngs):
    """A strided 1x1 projection where the shape changes, else None (identity)."""
    if in_features == out_features and strides == 1:
        return None
    return Projection(in_features, out_features, strides, rngs=rngs)


class Projection(nnx.Module):
    """The shortcut of a block that changes shape: a strided 1x1 convolution and BatchNorm."""

    def __init__(self, in_features: int, out_features: int, strides: int, *, rngs: nnx.Rngs):
        self.conv = _conv(in_features, out_features, (1, 1), strides, rngs)
        self.bn = _batch_norm(out_features, rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return self.bn(self.conv(x), use_running_average=not train)


def _apply_shortcut(shortcut, x, train):
    return x if shortcut is None else shortcut(x, train)


class ResNet(nnx.Module):
    """A ResNet classifier for images of shape ``(batch, height, width, in_channels)``.

    Args:
      stage_sizes: blocks per stage; the filters double and the resolution halves per stage.
      block_cls: :class:`ResNetBlock` or :class:`BottleneckResNetBlock`.
      num_classes: number of output logits.
      in_channels: channels of the input images (1 for Fashion-MNIST, 3 for CIFAR and ImageNet).
      num_filters: filters of the first stage.
      small_inputs: the CIFAR stem (one 3x3 convolution, stride 1, no max-pooling) instead of the
        ImageNet stem (7x7 convolution with stride 2, then 3x3 max-pooling with stride 2).
      rngs: parameter initialisation keys.
    """

    def __init__(
        self,
        stage_sizes: Sequence[int],
        block_cls: type[ResNetBlock] | type[BottleneckResNetBlock],
        *,
        num_classes: int,
        in_channels: int = 3,
        num_filters: int = 64,
        small_inputs: bool = False,
        rngs: nnx.Rngs,
    ):
        self.small_inputs = small_inputs
        stem_kernel, stem_strides = ((3, 3), 1) if small_inputs else ((7, 7), 2)
        self.stem_conv = _conv(in_channels, num_filters, stem_kernel, stem_strides, rngs)
        self.stem_bn = _batch_norm(num_filters, rngs)
        blocks = []
        features = num_filters
        for stage, num_blocks in enumerate(stage_sizes):
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                blocks.append(block_cls(features, num_filters * 2**stage, strides, rngs=rngs))
                features = num_filters * 2**stage * block_cls.expansion
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Logits for the images ``x``; ``train`` selects batch (True) or running statistics."""
        x = nnx.relu(self.stem_bn(self.stem_conv(x), use_running_average=not train))
        if not self.small_inputs:
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x, train)
        return self.head(jnp.mean(x, axis=(1, 2)))


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=ResNetBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=ResNetBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckResNetBlock)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=BottleneckResNetBlock)

# CIFAR-style networks (6n + 2 layers): 16, 32, 64 filters, small-input stem.
_cifar = functools.partial(ResNet, block_cls=ResNetBlock, num_filters=16, small_inputs=True)
ResNet8 = functools.partial(_cifar, stage_sizes=(1, 1, 1))
ResNet20 = functools.partial(_cifar, stage_sizes=(3, 3, 3))
ResNet56 = functools.partial(_cifar, stage_sizes=(9, 9, 9))

# For tests: a few thousand parameters.
_ResNetTiny = functools.partial(_cifar, stage_sizes=(1, 1), num_filters=4)


def create_model(name: str, **kwargs) -> ResNet:
    """The model called ``name`` in this module (``"ResNet18"``, ``"ResNet8"``...)."""
    model_cls = globals().get(name)
    if not isinstance(model_cls, functools.partial):
        raise ValueError(f"Unknown model {name!r}: use one of {', '.join(MODELS)}.")
    return model_cls(**kwargs)


MODELS = ("ResNet8", "ResNet18", "ResNet20", "ResNet34", "ResNet50", "ResNet56", "ResNet101")
