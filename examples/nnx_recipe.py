"""Flax NNX recipe: ``salsa()`` on the NNX MNIST tutorial's CNN (BatchNorm and Dropout).

Run with ``python -m examples.nnx_recipe`` (scikit-learn's 8x8 digits, offline, CPU: seconds).

What a line search needs on top of the tutorial's ``train_step``:

* a pure ``value_fn(params, batch, key)``: ``nnx.split(model, nnx.Param, ...)`` once, then
  ``nnx.merge(graphdef, params, rest, copy=True)`` in every call (BatchNorm in train mode writes
  its statistics into the merged model; without ``copy=True`` it writes into the shared ones);
* the same batch and the same dropout key for the gradient call and every probe: one key per step,
  ``jax.random.fold_in(base_key, step)``, turned into ``nnx.Rngs(dropout=key)`` inside the call;
* probes discard the BatchNorm statistics; the gradient call returns them as aux and the step
  applies them once, after ``optimizer.update``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import salsa_optax


class CNN(nnx.Module):
    """The NNX tutorial's CNN: (Conv, BatchNorm, relu, avg_pool) x 2, Dense, Dropout, Dense."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(2 * 2 * 64, 256, rngs=rngs)  # 8x8 images, pooled twice
        self.dropout = nnx.Dropout(rate=0.1)  # no rngs of its own: each call passes them
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.avg_pool(nnx.relu(self.batch_norm1(self.conv1(x))))
        x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)
        return self.linear2(self.dropout(nnx.relu(self.linear1(x)), rngs=rngs))


def load_data(num_test: int = 297) -> tuple[dict, dict]:
    """The 1797 8x8 digits as ``{"image": (N, 8, 8, 1) in [0, 1], "label": (N,)}``, split."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    data = {"image": images, "label": digits.target.astype(np.int32)}
    return ({k: v[num_test:] for k, v in data.items()}, {k: v[:num_test] for k, v in data.items()})


def loss_fn(model: CNN, batch: dict, key: jax.Array) -> jax.Array:
    """Mean cross-entropy in training mode, dropout drawn from ``key`` (a fresh Rngs per call)."""
    logits = model(batch["image"], rngs=nnx.Rngs(dropout=key))
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, batch: dict, key: jax.Array) -> jax.Array:
    """One ``salsa()`` step on ``batch``; ``key`` drives dropout in every evaluation of the step."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def value_fn(params, batch, key):  # pure: the gradient call and every line-search probe
        trial = nnx.merge(graphdef, params, rest, copy=True)
        return loss_fn(trial, batch, key), nnx.state(trial, nnx.BatchStat)

    (loss, batch_stats), grads = jax.value_and_grad(value_fn, has_aux=True)(params, batch, key)
    # `batch` and `key` are forwarded to value_fn: the probes see this step's batch and dropout.
    optimizer.update(model, grads, value=loss, grad=grads, value_fn=value_fn, batch=batch, key=key)
    nnx.update(model, batch_stats)  # the gradient call's BatchNorm update, applied once
    return loss


@nnx.jit
def eval_step(model: CNN, batch: dict) -> jax.Array:
    """Test accuracy with BatchNorm's running averages and no dropout."""
    model = nnx.view(model, deterministic=True, use_running_average=True)  # no dropout, averages
    return (model(batch["image"]).argmax(-1) == batch["label"]).mean()


def search_totals(optimizer: nnx.Optimizer) -> dict[str, int]:
    """The running totals of ``salsa()``'s ``info`` (searches, evaluations, skipped steps...)."""
    info = optax.tree.get(nnx.as_pure(optimizer.opt_state), "info")
    return {k: int(v) for k, v in info._asdict().items() if k.startswith("total_")}


def train(num_steps: int = 300, batch_size: int = 64, seed: int = 0, step_fn=train_step) -> dict:
    """Trains the CNN with ``salsa()``; returns losses, test accuracy, totals and the model.

    ``step_fn`` is ``train_step`` or a stand-in with its signature (the tests pass faulty ones).
    """
    train_data, test_data = load_data()
    model = CNN(rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, salsa_optax.salsa(), wrt=nnx.Param)
    base_key = jax.random.key(seed + 1)
    order = np.random.default_rng(seed)
    losses = []
    for step in range(num_steps):
        index = order.choice(len(train_data["label"]), batch_size, replace=False)
        batch = {k: jnp.asarray(v[index]) for k, v in train_data.items()}
        key = jax.random.fold_in(base_key, step)  # one dropout key per step
        losses.append(float(step_fn(model, optimizer, batch, key)))
    test = {k: jnp.asarray(v) for k, v in test_data.items()}
    totals = search_totals(optimizer)
    if totals["total_value_mismatches"] > 0:
        print(
            f"WARNING: {totals['total_value_mismatches']} searches found value_fn disagreeing "
            "with the loss of the gradient call: another batch, dropout key or BatchNorm state?"
        )
    accuracy = float(eval_step(model, test))
    return {"losses": losses, "accuracy": accuracy, "totals": totals, "model": model}


def main() -> None:
    result = train()
    losses = result["losses"]
    print(f"loss: first {losses[0]:.3f}, mean of the last 20 {np.mean(losses[-20:]):.3f}")
    print(f"test accuracy: {result['accuracy']:.3f}")
    print("search totals:", result["totals"])


if __name__ == "__main__":
    main()
