"""Image-classification input pipeline: tfds data sources (no TensorFlow) read through grain.

Every dataset is read with ``tfds.data_source`` from prepared array_record files; nothing is ever
downloaded. The batch of train step ``k`` is a pure function of ``(seed, k)``: the epoch
``k // steps_per_epoch`` has its own permutation of the examples, and the augmentation of step ``k``
its own random generator. A run resumed at step ``k`` therefore sees exactly the batches an
uninterrupted run sees. grain maps the steps to batches in background threads and prefetches them.

In a multi-process run each process reads only its ``rows`` of every global batch
(:func:`examples.common.sharding.process_rows`): the same examples, with the same augmentation,
as those rows of the single-process batch.

Datasets (tfds names): ``fashion_mnist_debian`` (the offline default: real Fashion-MNIST from the
Debian package ``dataset-fashion-mnist``, turned into a local tfds dataset the first time it is
used), ``fashion_mnist``, ``cifar10``, ``cifar100`` and ``imagenet2012``.
"""

import gzip
import os
import pathlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import grain
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

DEBIAN_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class DatasetSpec(NamedTuple):
    """How to read and preprocess one tfds dataset.

    Attributes:
      train_split: tfds split to train on.
      eval_split: tfds split to evaluate on.
      image_size: side of the square images the model sees.
      mean: per-channel mean of the pixel values in [0, 1], subtracted before training.
      std: per-channel standard deviation, divided out.
      fixed_size: whether the stored images already have ``image_size``: then train batches are
        augmented by padded random crops and flips; otherwise (ImageNet) by Inception-style random
        resized crops and flips, and eval images are resized and centre-cropped.
    """

    train_split: str
    eval_split: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fixed_size: bool = True


_FASHION_MNIST = DatasetSpec("train", "test", 28, (0.2860,), (0.3530,))
_CIFAR = DatasetSpec("train", "test", 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
DATASETS = {
    "fashion_mnist_debian": _FASHION_MNIST,
    "fashion_mnist": _FASHION_MNIST,
    "cifar10": _CIFAR,
    "cifar100": _CIFAR._replace(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    "imagenet2012": DatasetSpec(
        "train", "validation", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False
    ),
}


class FashionMnistDebian(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (60 000 train, 10 000 test, 28x28 grey, 10 classes) from the Debian package.

    Built from ``/usr/share/datasets/fashion-mnist/`` without TensorFlow and without network:
    ``sudo apt-get install dataset-fashion-mnist``, then :func:`prepare_fashion_mnist_debian`.
    """

    VERSION = tfds.core.Version("1.0.0")
    # tfds locates a builder's code through its package, which needs `importlib_resources` for
    # builders outside tensorflow_datasets; this file is the answer it looks for.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST from the Debian package dataset-fashion-mnist.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=FASHION_MNIST_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # keep the files' order: record i is example i
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        del dl_manager  # the data is on disk already
        return {"train": self._generate_examples("train"), "test": self._generate_examples("t10k")}

    def _generate_examples(self, prefix: str) -> Iterator[tuple[int, dict[str, Any]]]:
        images = _read_idx(DEBIAN_FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz", header=16)
        labels = _read_idx(DEBIAN_FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz", header=8)
        for i, (image, label) in enumerate(zip(images.reshape(-1, 28, 28, 1), labels, strict=True)):
            yield i, {"image": image, "label": int(label)}


def _read_idx(path: pathlib.Path, header: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


def prepare_fashion_mnist_debian(data_dir: str | None) -> None:
    """Builds the ``fashion_mnist_debian`` tfds dataset in ``data_dir`` (a few seconds, ~45 MB).

    Raises:
      FileNotFoundError: if the Debian package is not installed, saying how to install it.
    """
    if not DEBIAN_FASHION_MNIST_DIR.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST is not in {DEBIAN_FASHION_MNIST_DIR}. Install it with "
            "`sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist` (31 MB), "
            "or choose another --config.dataset."
        )
    FashionMnistDebian(data_dir=data_dir, file_format="array_record").download_and_prepare()


def get_source(name: str, split: str, data_dir: str | None = None) -> Any:
    """The tfds data source of ``split`` of dataset ``name``, never downloading.

    ``fashion_mnist_debian`` is built from the Debian package the first time it is needed.

    Raises:
      FileNotFoundError: if the dataset is not prepared in ``data_dir``, saying how to prepare it.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(DATASETS)}.")
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # tfds raises several types for "not prepared"
        if name != "fashion_mnist_debian":
            raise FileNotFoundError(_how_to_prepare(name, data_dir)) from error
    prepare_fashion_mnist_debian(data_dir)
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def _how_to_prepare(name: str, data_dir: str | None) -> str:
    data_dir = data_dir or os.path.expanduser("~/tensorflow_datasets")
    manual = (
        f" First put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org) in "
        f"{data_dir}/downloads/manual/."
        if name == "imagenet2012"
        else ""
    )
    return (
        f"The tfds dataset {name!r} is not prepared (array_record files) in {data_dir}, and this "
        f"trainer never downloads.{manual} Prepare it once, on a machine with internet access, "
        f"with `tfds build {name} --file_format=array_record --data_dir={data_dir}` (tfds's "
        "builders need `pip install tensorflow` for this step only), then copy the folder "
        f"{data_dir}/{name} here. For an offline run use --config.dataset=fashion_mnist_debian."
    )


def num_classes(source: Any) -> int:
    return source.dataset_info.features["label"].num_classes


def num_channels(source: Any) -> int:
    return source.dataset_info.features["image"].shape[-1]


def train_batches(
    source: Any,
    spec: DatasetSpec,
    *,
    batch_size: int,
    seed: int,
    num_steps: int,
    start_step: int = 0,
    augment: bool = True,
    rows: np.ndarray | None = None,
    num_threads: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """The train batches of steps ``start_step, ..., num_steps - 1`` (this process's rows).

    Args:
      source: the train split's data source (:func:`get_source`).
      spec: the dataset's :class:`DatasetSpec`.
      batch_size: examples per batch (the global batch, over all devices).
      seed: fixes the epoch permutations and the augmentation.
      num_steps: the step after the last batch.
      start_step: the first step (the step a resumed run continues from).
      augment: random crops and flips; otherwise the stored images, only normalised.
      rows: the positions in each global batch that this process loads; None: all of them.
      num_threads: grain threads preparing batches ahead of the train step.

    Returns:
      Batches ``{"image": float32 (rows, size, size, channels), "label": int32 (rows,)}``; the
      last partial batch of each epoch is dropped.
    """
    rows = np.arange(batch_size) if rows is None else rows
    steps_per_epoch = len(source) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(source)} training examples.")

    def load(step: int) -> dict[str, np.ndarray]:
        epoch, position = divmod(step, steps_per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(source))
        indices = order[position * batch_size : (position + 1) * batch_size]
        rng = np.random.default_rng([seed, epoch, position, 1]) if augment else None
        return _preprocess(source, indices, rows, spec, rng)

    steps = grain.MapDataset.range(start_step, num_steps).map(load)
    return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads, prefetch_buffer_size=4)))


def eval_batches(
    source: Any,
    spec: DatasetSpec,
    *,
    batch_size: int,
    rows: np.ndarray | None = None,
    num_threads: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """All examples of ``source`` in order, in batches padded to ``batch_size`` (``rows`` of each).

    Returns:
      Batches with ``image``, ``label`` and ``mask`` (1.0 for real examples, 0.0 for padding), so
      that every batch has the same shape (one compiled eval step) and padding can be excluded.
      Padding repeats the last example: a process whose rows are all padding still has images.
    """
    rows = np.arange(batch_size) if rows is None else rows

    def load(batch_index: int) -> dict[str, np.ndarray]:
        indices = batch_index * batch_size + np.arange(batch_size)
        batch = _preprocess(source, np.minimum(indices, n - 1), rows, spec, None)
        batch["mask"] = (indices[rows] < n).astype(np.float32)
        return batch

    n = len(source)
    batches = grain.MapDataset.range(-(-n // batch_size)).map(load)
    return iter(batches.to_iter_dataset(grain.ReadOptions(num_threads, prefetch_buffer_size=4)))


def _preprocess(
    source: Any,
    indices: np.ndarray,
    rows: np.ndarray,
    spec: DatasetSpec,
    rng: np.random.Generator | None,
) -> dict[str, np.ndarray]:
    """Reads ``rows`` of the batch of examples ``indices``, crops/augments the images, scales them
    to [0, 1] and standardises them.

    The random draws are those of the whole batch, whichever rows are read: a row's augmentation
    does not depend on which process reads it.
    """
    examples = source.__getitems__(indices[rows].tolist())
    if spec.fixed_size:
        images = np.stack([e["image"] for e in examples])
        if rng is not None:
            images = _random_crop_and_flip(images, rng, rows, len(indices))
    else:
        rngs = rng.spawn(len(indices)) if rng is not None else [None] * len(indices)
        images = np.stack(
            [
                _resize_and_crop(e["image"], spec.image_size, rngs[row])
                for e, row in zip(examples, rows, strict=True)
            ]
        )
    images = (images.astype(np.float32) / 255.0 - np.float32(spec.mean)) / np.float32(spec.std)
    labels = np.asarray([e["label"] for e in examples], np.int32)
    return {"image": images, "label": labels}


def _random_crop_and_flip(
    images: np.ndarray, rng: np.random.Generator, rows: np.ndarray, batch_size: int, pad: int = 4
):
    """Random ``size x size`` crops of the zero-padded images, each flipped with probability 1/2.

    ``images`` are the ``rows`` of a batch of ``batch_size``; the draws are the whole batch's.
    """
    n, size = images.shape[:2]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad + 1, size=(2, batch_size))[:, rows]
    flip = rng.random(batch_size)[rows] < 0.5
    y = top[:, None] + np.arange(size)
    x = left[:, None] + np.arange(size)
    x = np.where(flip[:, None], x[:, ::-1], x)
    return padded[np.arange(n)[:, None, None], y[:, :, None], x[:, None, :]]


def _resize_and_crop(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """ImageNet preprocessing of one image.

    Training (``rng`` given): a random crop covering 8-100 % of the area with aspect ratio 3/4 to
    4/3 (Szegedy et al., 2015), resized to ``size``, flipped with probability 1/2. Evaluation: the
    central crop of ``size / 0.875`` pixels (shorter side), resized to ``size``.
    """
    height, width = image.shape[:2]
    box = None
    if rng is not None:
        for _ in range(10):
            area = height * width * rng.uniform(0.08, 1.0)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            h, w = round(np.sqrt(area / ratio)), round(np.sqrt(area * ratio))
            if 0 < h <= height and 0 < w <= width:
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                box = (left, top, left + w, top + h)
                break
    if box is None:  # evaluation, or no valid random crop: the central crop
        side = min(height, width) * 0.875 if rng is None else min(height, width)
        top, left = (height - side) / 2, (width - side) / 2
        box = (round(left), round(top), round(left + side), round(top + side))
    pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    resized = np.asarray(pil.resize((size, size), Image.BILINEAR, box=box)).reshape(size, size, -1)
    if rng is not None and rng.random() < 0.5:
        resized = resized[:, ::-1]
    return resized
