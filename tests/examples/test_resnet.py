"""Tests of the ResNet example: optimizers by name, BatchNorm under line search, resume, devices."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from examples.common import checkpointing, configs, metrics, sharding, train_step
from examples.resnet import input_pipeline, train

MOCK_EXAMPLES = 32  # 4 steps of 8 per epoch under the tiny config
HERE = pathlib.Path(__file__).resolve().parent


def tiny_config(**changes):
    return dataclasses.replace(configs.load_config("examples.resnet.configs", "tiny"), **changes)


def restore_final(config, workdir, source):
    """``(step, state)`` of the newest checkpoint in ``workdir``."""
    _, template = train.create_train_state(config, source, 10)
    with checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")) as checkpointer:
        return checkpointer.restore(template)


def leaves(state):
    return jax.tree.leaves(jax.tree.map(np.asarray, nnx.to_pure_dict(state)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mock_tfds):
    """Four salsa() steps of the tiny config on mock data, in one run."""
    config = tiny_config()
    workdir = tmp_path_factory.mktemp("uninterrupted")
    with mock_tfds(num_examples=MOCK_EXAMPLES):
        summary = train.train_and_evaluate(config, str(workdir))
        source = input_pipeline.get_source(config.dataset, "train")
        step, state = restore_final(config, workdir, source)
    return workdir, summary, step, state


def test_tiny_run_writes_everything_and_compiles_once(uninterrupted):
    workdir, summary, step, _ = uninterrupted
    assert step == 4
    assert summary["train_compiles"] == 1 and summary["eval_compiles"] == 1
    records = metrics.read_jsonl(workdir / "metrics.jsonl")
    assert [r["step"] for r in records if "num_steps" in r] == [2, 4]
    (evaluation,) = [r for r in records if "eval_accuracy" in r]
    assert evaluation["epoch"] == 1 and 0.0 <= evaluation["eval_accuracy"] <= 1.0
    assert summary["searched_fraction"] == 1.0  # salsa() searches on its first 9 steps
    assert summary["evaluations_per_step"] >= 1.0
    assert np.isfinite(summary["final_train_loss"]) and summary["final_step_size"] > 0
    assert (workdir / "curves.png").stat().st_size > 0
    assert json.loads((workdir / "summary.json").read_text())["steps"] == 4


def test_sigterm_then_resume_is_bit_identical(uninterrupted, tmp_path, mock_tfds, monkeypatch):
    config = tiny_config()
    calls = []
    shard_batch = sharding.shard_batch

    def shard_and_stop_at_step_two(batch, mesh):
        calls.append(None)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while step 2 is being prepared
        return shard_batch(batch, mesh)

    with mock_tfds(num_examples=MOCK_EXAMPLES):
        source = input_pipeline.get_source(config.dataset, "train")
        monkeypatch.setattr(sharding, "shard_batch", shard_and_stop_at_step_two)
        train.train_and_evaluate(config, str(tmp_path))
        assert restore_final(config, tmp_path, source)[0] == 2  # stopped, and saved, mid-epoch
        monkeypatch.setattr(sharding, "shard_batch", shard_batch)
        train.train_and_evaluate(config, str(tmp_path))
        step, state = restore_final(config, tmp_path, source)
    assert step == 4
    expected = uninterrupted[3]
    for resumed, reference in zip(leaves(state), leaves(expected), strict=True):
        np.testing.assert_array_equal(resumed, reference)
    train_losses = [
        [r.get("train_loss") for r in metrics.read_jsonl(workdir / "metrics.jsonl")]
        for workdir in (tmp_path, uninterrupted[0])
    ]
    assert train_losses[0] == train_losses[1]


@pytest.mark.parametrize("name", ["salsa", "salsa_sgd", "sls", "adam", "sgd"])
def test_each_optimizer_lowers_the_loss_on_a_fixed_batch(name, mock_tfds):
    config = tiny_config(optimizer=name)
    with mock_tfds(num_examples=MOCK_EXAMPLES):
        source = input_pipeline.get_source(config.dataset, "train")
        batch = next(
            input_pipeline.train_batches(
                source,
                input_pipeline.DATASETS[config.dataset],
                batch_size=8,
                seed=0,
                num_steps=1,
                augment=False,
            )
        )
        graphdef, state = train.create_train_state(config, source, 10)
    mesh = sharding.create_mesh()
    counted = train_step.TraceCounter(train_step.pure_train_step(graphdef, train.train_step_fn))
    step = sharding.data_parallel_jit(counted, mesh, donate_state=True)
    state, batch = sharding.replicate(state, mesh), sharding.shard_batch(batch, mesh)
    history = []
    for _ in range(5):
        state, step_metrics = step(state, batch)
        history.append(jax.device_get(step_metrics))
    losses = [m["train_loss"] for m in history]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert counted.count == 1
    assert all(m["step_size"] > 0 for m in history)
    if name in ("adam", "sgd"):
        assert history[0]["num_evaluations"] == 0
    else:
        assert history[0]["searched"] == 1.0 and history[0]["num_evaluations"] >= 1


class _ProbeState(NamedTuple):
    value: jax.Array
    value_fn_at_params: jax.Array


def _probing_transform(num_probes=3):
    """Calls ``value_fn`` at perturbed parameters and at the parameters; never moves them."""

    def init_fn(params):
        del params
        return _ProbeState(jnp.zeros(()), jnp.zeros(()))

    def update_fn(updates, state, params, *, value, grad, value_fn, **extra):
        del state, grad, extra
        for k in range(1, num_probes + 1):
            value_fn(jax.tree.map(lambda p, k=k: p * (1.0 + 0.5 * k), params))
        updates = jax.tree.map(jnp.zeros_like, updates)
        return updates, _ProbeState(value, value_fn(params))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def test_line_search_probes_leave_batch_norm_statistics_untouched():
    model = train.create_model(tiny_config(), num_classes=10, in_channels=1)
    initial = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    x = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    labels = jnp.arange(8) % 10
    reference = nnx.clone(model)
    # What one training-mode forward pass does to the statistics.
    nnx.jit(lambda m: m(x, train=True))(reference)
    optimizer = nnx.Optimizer(model, _probing_transform(), wrt=nnx.Param)

    def loss_fn(m):
        return train.cross_entropy_loss(m, {"image": x, "label": labels})

    loss, _ = nnx.jit(train_step.optimizer_step, static_argnums=2)(model, optimizer, loss_fn)

    got = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    want = jax.tree.leaves(nnx.state(reference, nnx.BatchStat))
    assert not all(np.allclose(a, b) for a, b in zip(want, jax.tree.leaves(initial), strict=True))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    probe = optimizer.opt_state
    # value_fn saw the same batch, in training mode, from the same statistics as the gradient.
    np.testing.assert_allclose(probe.value_fn_at_params[...], loss, rtol=1e-6)
    np.testing.assert_allclose(probe.value[...], loss, rtol=1e-6)


_EIGHT_DEVICE_RUN = """
import sys
sys.path[:0] = sys.argv[2:]
import jax
assert jax.device_count() == 8, jax.devices()
import conftest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking
mocking._getitems = conftest.fixed_getitems
from examples.common import configs
from examples.resnet import train
with tfds.testing.mock_data(num_examples={num_examples}):
    train.train_and_evaluate(configs.load_config("examples.resnet.configs", "tiny"), sys.argv[1])
"""


def test_eight_devices_match_one(uninterrupted, tmp_path, mock_tfds):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        # Programs that do not depend on the device count (initialisation) come from the cache.
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    subprocess.run(
        [
            sys.executable,
            "-c",
            _EIGHT_DEVICE_RUN.format(num_examples=MOCK_EXAMPLES),
            str(tmp_path),
            str(HERE.parents[1]),
            str(HERE),
        ],
        env=env,
        check=True,
        timeout=240,
    )
    config = tiny_config()
    with mock_tfds(num_examples=MOCK_EXAMPLES):
        source = input_pipeline.get_source(config.dataset, "train")
        step, state = restore_final(config, tmp_path, source)
    assert step == 4
    # Equal up to the order of the cross-device sums, which Adam's scaling amplifies where
    # gradients are tiny: to 0.1 % of each array's scale. Per-device BatchNorm statistics or a
    # missing gradient all-reduce would be off by far more.
    for eight, one in zip(leaves(state), leaves(uninterrupted[3]), strict=True):
        if one.dtype.kind == "f":
            np.testing.assert_allclose(eight, one, rtol=0, atol=1e-3 * np.abs(one).max() + 1e-7)
        else:
            np.testing.assert_array_equal(eight, one)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build cifar10 --file_format=array_record"):
        input_pipeline.get_source("cifar10", "train", data_dir=str(tmp_path))


@pytest.mark.skipif(
    not input_pipeline.DEBIAN_FASHION_MNIST_DIR.is_dir(),
    reason="real Fashion-MNIST needs the Debian package: apt-get install dataset-fashion-mnist",
)
def test_real_fashion_mnist_from_debian(tmp_path):
    config = tiny_config(data_dir=str(tmp_path / "tfds"), num_train_steps=3, eval_batch_size=1000)
    train_source = input_pipeline.get_source(config.dataset, "train", config.data_dir)
    test_source = input_pipeline.get_source(config.dataset, "test", config.data_dir)
    assert (len(train_source), len(test_source)) == (60_000, 10_000)
    assert input_pipeline.num_classes(train_source) == 10
    raw_images = input_pipeline._read_idx(
        input_pipeline.DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz", header=16
    ).reshape(-1, 28, 28, 1)
    raw_labels = input_pipeline._read_idx(
        input_pipeline.DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", header=8
    )
    example = test_source[9_999]
    np.testing.assert_array_equal(example["image"], raw_images[9_999])
    assert example["label"] == raw_labels[9_999]

    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    records = metrics.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == 3 and np.isfinite(summary["final_train_loss"])
    assert 0.0 <= summary["final_eval_accuracy"] <= 1.0
    assert records[-1]["epoch"] == 1
