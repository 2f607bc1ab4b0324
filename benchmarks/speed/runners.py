"""One object per timed thing: ``step()`` does one step and returns once its results exist."""

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.speed import models
from examples.common.train_step import TraceCounter, optimizer_step, pure_train_step

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Counts XLA backend compilations in the process (a `jax.monitoring` listener)."""

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, duration: float, **kwargs: Any) -> None:
        del duration, kwargs
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1


class JaxRunner:
    """One optax transform training its own copy of the model, one jitted step at a time."""

    def __init__(self, name: str, tx, spec: models.SpeedModel, batches: Sequence[dict]):
        self.name = name
        self.batches = batches
        self.index = 0
        model = spec.make_model(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        graphdef, state = nnx.split((model, optimizer))

        def step_fn(model, optimizer, batch):
            loss, _ = optimizer_step(
                model, optimizer, lambda m: (models.classification_loss(spec, m, batch), None)
            )
            return {"loss": loss, **search_metrics(optimizer.opt_state)}

        self.trace_counter = TraceCounter(pure_train_step(graphdef, step_fn))
        self.train_step = jax.jit(self.trace_counter, donate_argnums=0)
        # Donation needs one buffer per leaf; an initial state may share a buffer between leaves.
        self.state = jax.tree.map(lambda x: x.copy(), state)
        self.param_bytes = tree_bytes(nnx.state(model, nnx.Param))
        self.opt_state_bytes = tree_bytes(optimizer.opt_state)
        self.compiled: Any = None  # the step compiled by `compile`, whose HLO the tools read
        self.memory: dict[str, Any] = {}
        self.metrics: list[dict] = []

    def compile(self) -> float:
        """Compiles the step ahead of time (the jitted call reuses it); returns seconds."""
        start = time.perf_counter()
        self.compiled = self.train_step.lower(self.state, self.batches[0]).compile()
        seconds = time.perf_counter() - start
        self.memory = compiled_memory(self.compiled)
        return seconds

    def step(self) -> None:
        """One step, returning once its results exist."""
        self.dispatch()
        jax.block_until_ready((self.state, self.metrics[-1]))

    def dispatch(self) -> None:
        """One step, returning as soon as it is queued (as a training loop that does not read
        its metrics runs): whatever the step makes the host wait for shows in the time of a
        run of such steps."""
        batch = self.batches[self.index % len(self.batches)]
        self.index += 1
        self.state, metrics = self.train_step(self.state, batch)
        self.metrics.append(metrics)

    def search_record(self, warmup: int) -> tuple[np.ndarray, np.ndarray]:
        """Per timed step: ``value_fn`` evaluations and whether it searched."""
        metrics = jax.device_get(self.metrics[warmup:])
        evaluations = np.array([m["evaluations"] for m in metrics], dtype=float)
        return evaluations, np.array([m["searched"] for m in metrics], dtype=bool)


class ProbeRunner:
    """Times the loss alone (``forward``) or with its gradient (``forward_backward``)."""

    steps_per_chunk = 3  # a reference cost, not a trajectory: a few samples per turn suffice

    def __init__(self, name: str, spec: models.SpeedModel, batches: Sequence[dict]):
        self.name = name
        self.batches = batches
        self.index = 0
        graphdef, params, rest = nnx.split(spec.make_model(nnx.Rngs(0)), nnx.Param, ...)

        def loss(params, batch):
            model = nnx.merge(graphdef, params, rest, copy=True)
            return models.classification_loss(spec, model, batch)

        self.fn = jax.jit(loss if name == "forward" else jax.value_and_grad(loss))
        self.params = params

    def compile(self) -> float:
        start = time.perf_counter()
        self.fn.lower(self.params, self.batches[0]).compile()
        return time.perf_counter() - start

    def step(self) -> None:
        batch = self.batches[self.index % len(self.batches)]
        self.index += 1
        jax.block_until_ready(self.fn(self.params, batch))


class TorchRunner:
    """PyTorch Adam or the authors' ``SaLSA`` on the same architecture and batches."""

    def __init__(self, name: str, spec: models.SpeedModel, batches: Sequence[dict]):
        import torch

        self.torch = torch
        self.name = name
        on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
        self.device = "cuda" if on_gpu else "cpu"
        to_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        self.batches = [
            (to_torch(b["x"].transpose(0, 3, 1, 2)), to_torch(b["y"].astype(np.int64)))
            for b in batches
        ]
        self.index = 0
        torch.manual_seed(0)
        self.model = models.torch_model(spec).to(self.device)
        if name == "torch_adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        else:
            from salsa.SaLSA import SaLSA

            self.optimizer = SaLSA(self.model.parameters(), speed_up=name == "torch_salsa")
        self.evaluations: list[int] = []
        self.searched: list[bool] = []

    def compile(self) -> float:
        return 0.0

    def step(self) -> None:
        x, y = self.batches[self.index % len(self.batches)]
        self.index += 1
        loss_fn = self.torch.nn.functional.cross_entropy
        if self.name == "torch_adam":
            self.optimizer.zero_grad()
            loss_fn(self.model(x), y).backward()
            self.optimizer.step()
            self.evaluations.append(0)
            self.searched.append(False)
        else:

            def closure(backwards=False):
                loss = loss_fn(self.model(x), y)
                if backwards:
                    self.optimizer.zero_grad()
                    loss.backward()
                return loss

            forwards = self.optimizer.state["n_forwards"]
            self.optimizer.step(closure)
            self.evaluations.append(self.optimizer.state["n_forwards"] - forwards - 1)
            self.searched.append(self.optimizer.tslls == 0)
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def search_record(self, warmup: int) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.evaluations[warmup:], dtype=float), np.array(self.searched[warmup:])


def search_metrics(opt_state: Any) -> dict[str, jax.Array]:
    """``value_fn`` evaluations of the last step and whether it searched, from the state's info."""
    info = optax.tree_utils.tree_get(opt_state, "info")
    if info is None:  # no line search
        evaluations, searched = jnp.zeros((), jnp.int32), False
    elif hasattr(info, "num_evaluations"):  # SaLSa
        evaluations, searched = info.num_evaluations, info.searched
    else:  # optax's backtracking line search: one value_fn call per iteration, every step
        evaluations, searched = info.num_linesearch_steps, True
    # `jnp.asarray` also unwraps the nnx.Optimizer's state variables.
    return {"evaluations": jnp.asarray(evaluations), "searched": jnp.asarray(searched)}


def tree_bytes(tree: Any) -> int:
    return int(sum(x.nbytes for x in jax.tree.leaves(tree)))


def compiled_memory(compiled: Any) -> dict[str, Any]:
    """Bytes of a compiled step from XLA's memory analysis (``{}`` where the backend has none)."""
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        stats = None
    if stats is None:
        return {}
    fields = ("argument", "output", "alias", "temp")
    memory = {f"{f}_bytes": int(getattr(stats, f"{f}_size_in_bytes")) for f in fields}
    # Donated inputs alias outputs: live at once are the inputs, the new outputs and temporaries.
    memory["peak_bytes"] = (
        memory["argument_bytes"]
        + memory["output_bytes"]
        - memory["alias_bytes"]
        + memory["temp_bytes"]
    )
    return memory
