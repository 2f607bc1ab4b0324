"""Linear-decay and refined learning-rate schedules (Defazio et al., 2023).

Linear decay is the worst-case-optimal schedule of the last iterate; refinement replaces it with
a schedule computed offline from the gradient norms logged during an earlier run of the same task:

1. run 1 with :func:`record_grad_norm` first in the chain, logging ``tree_get(state,
   "grad_norm")`` every step (or every ``k`` steps);
2. ``table = refine_schedule(norms, ord=2)`` (``ord=1`` for Adam-type optimizers);
3. run 2 with ``learning_rate=refined_schedule(base_lr, table, total_steps)``, ``base_lr`` tuned
   by a small sweep.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage

from salsa_optax._src import validation

# Logging artefacts at both ends of a norm log, dropped as the reference pipeline does.
_TRIMMED_ENDS = 2
# Smallest smoothed norm used for the weights: keeps `norm ** -2` finite in float64.
_NORM_FLOOR = 1e-30


def linear_decay_schedule(
    peak_value: Any,
    total_steps: int,
    warmup_steps: int = 0,
    exponent: Any = 1.0,
) -> optax.Schedule:
    r"""Linear (or polynomial) decay to zero, with an optional linear warm-up.

    .. math::
      \eta_t = \eta_{\text{peak}} \cdot
      \begin{cases}
        (t + 1) / W, & t < W \\
        \left(1 - \frac{t - W}{T - W}\right)^q, & W \le t \le T \\
        0, & t > T
      \end{cases}

    with :math:`W` = ``warmup_steps``, :math:`T` = ``total_steps`` and :math:`q` = ``exponent``.
    Without warm-up and with :math:`q = 1` this is :math:`\eta_{\text{peak}}(1 - t/T)`, the
    schedule of Defazio et al. The warm-up reaches the peak on step :math:`W - 1`, so no step is
    wasted at a zero learning rate.

    Args:
      peak_value: the peak learning rate, positive and finite (a number or a scalar array).
      total_steps: :math:`T`, the number of training steps; the rate reaches 0 at step :math:`T`.
      warmup_steps: :math:`W`, the length of the linear warm-up (0 for none).
      exponent: :math:`q > 0`; 1 is linear decay, larger values anneal faster early on.

    Returns:
      An ``optax.Schedule`` mapping a step count to a learning rate.

    Examples:
      >>> from salsa_optax import linear_decay_schedule
      >>> schedule = linear_decay_schedule(1.0, total_steps=10, warmup_steps=2)
      >>> [round(float(schedule(t)), 3) for t in range(11)]
      [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0]
      >>> import optax
      >>> optimizer = optax.sgd(learning_rate=linear_decay_schedule(0.1, total_steps=1000))

    References:
      Defazio, Cutkosky, Mehta, Mishchenko, `Optimal Linear Decay Learning Rate Schedules and
      Further Refinements <https://arxiv.org/abs/2310.07831>`_, 2023
    """
    _check_steps("total_steps", total_steps, 1)
    _check_steps("warmup_steps", warmup_steps, 0)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} must be smaller than total_steps={total_steps}: "
            "shorten the warm-up or train for longer."
        )
    _check_rate("peak_value", peak_value)
    validation.check_hyperparameter(
        "exponent", exponent, lambda q: 0 < q < math.inf, "0 < exponent < inf"
    )
    decay = optax.polynomial_schedule(
        init_value=peak_value,
        end_value=0.0,
        power=exponent,
        transition_steps=total_steps - warmup_steps,
    )
    if warmup_steps == 0:
        return decay
    warmup = lambda count: peak_value * (count + 1) / warmup_steps
    return optax.join_schedules([warmup, decay], [warmup_steps])


class GradNormInfo(NamedTuple):
    """What :func:`record_grad_norm` logged on the last step.

    Attributes:
      grad_norm: the norm of the incoming updates (scalar, at least float32).
    """

    grad_norm: jax.Array


class RecordGradNormState(NamedTuple):
    """State of :func:`record_grad_norm`.

    Attributes:
      info: a :class:`GradNormInfo`.
    """

    info: GradNormInfo


def record_grad_norm(ord: int = 2) -> optax.GradientTransformation:
    r"""Logs the norm of the incoming updates in the state and passes them through unchanged.

    Put it first in the chain so that it sees the raw minibatch gradient; read the norm with
    ``optax.tree_utils.tree_get(state, "grad_norm")``. These norms, logged over a whole run, are the
    input of :func:`refine_schedule`. A non-finite gradient is logged as it is (``inf`` or
    ``nan``); :func:`refine_schedule` drops such entries.

    Args:
      ord: 2 for :math:`\|g\|_2` (SGD-type optimizers), 1 for :math:`\|g\|_1` (Adam-type,
        coordinate-wise optimizers). It picks the norm, so ``optax.inject_hyperparams`` must
        keep it static: ``inject_hyperparams(record_grad_norm, static_args="ord")``.

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from salsa_optax import record_grad_norm
      >>> optimizer = optax.chain(record_grad_norm(ord=2), optax.sgd(0.1))
      >>> params = {"w": jnp.zeros(2)}
      >>> state = optimizer.init(params)
      >>> _, state = optimizer.update({"w": jnp.array([3.0, 4.0])}, state, params)
      >>> float(optax.tree_utils.tree_get(state, "grad_norm"))
      5.0
    """
    _check_ord(ord)

    def init_fn(params):
        dtype = jnp.promote_types(optax.tree.dtype(params, "highest"), jnp.float32)
        return RecordGradNormState(info=GradNormInfo(grad_norm=jnp.zeros((), dtype)))

    def update_fn(updates, state, params=None):
        del params
        dtype = state.info.grad_norm.dtype
        # Low-precision gradients are summed in the log's precision.
        norm = optax.tree.norm(optax.tree.cast(updates, dtype), ord=ord)
        return updates, RecordGradNormState(info=GradNormInfo(grad_norm=norm))

    return optax.GradientTransformation(init_fn, update_fn)


def refine_schedule(
    norms: Any,
    *,
    ord: int,
    tau: float = 0.1,
    grid: int = 10_000,
) -> np.ndarray:
    r"""Computes a refined schedule from the gradient norms logged during an earlier run.

    With :math:`\hat G_i` the norms median-filtered and resampled onto ``grid`` points
    :math:`i = 0 \dots K-1` of the run, :math:`p` = ``ord`` (:math:`p = 2` for the
    :math:`\ell_2` norm of SGD-type methods, :math:`p = 1` for the :math:`\ell_1` norm of Adam-type
    methods), the schedule is

    .. math::
      w_i = \hat G_i^{-p}, \qquad r_i = w_i \sum_{j > i} w_j, \qquad
      s_i = r_i / \max_j r_j,

    so :math:`s` peaks at 1 and ends at 0. Constant norms give linear decay exactly; large early
    norms give a warm-up; norms rising at the end give a fast final annealing.

    The steps, as in the authors' pipeline: non-finite entries are dropped, then the first and last
    two logged points; the log is linearly resampled onto ``grid`` equispaced points; a running
    median of odd width :math:`m = 2\lfloor\lfloor \tau K \rfloor / 2\rfloor + 1` smooths it (the
    end mirrored over :math:`2m` points, the start replicated). The reference resamples only logs
    shorter than ``grid``; resampling longer logs too keeps the window at ``tau`` of the run (for
    logs of at most ``grid`` points both agree).

    Args:
      norms: the logged norms, in order (a 1-D array-like, one entry per logged step).
      ord: 2 or 1, the norm that was logged (see :func:`record_grad_norm`).
      tau: the median window, as a fraction of the run.
      grid: :math:`K`, the number of points of the returned table.

    Returns:
      A float64 array of ``grid`` values in :math:`[0, 1]`, the schedule at equispaced fractions
      :math:`0 \dots 1` of the run; pass it to :func:`refined_schedule`.

    Examples:
      >>> import numpy as np
      >>> from salsa_optax import refine_schedule
      >>> table = refine_schedule(np.full(100, 3.0), ord=2, grid=11)
      >>> np.round(table, 2)   # constant norms: linear decay
      array([1. , 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0. ])

    References:
      Defazio, Cutkosky, Mehta, Mishchenko, `Optimal Linear Decay Learning Rate Schedules and
      Further Refinements <https://arxiv.org/abs/2310.07831>`_, 2023
    """
    _check_ord(ord)
    if not 0 < tau <= 1:
        raise ValueError(f"tau={tau!r} must satisfy 0 < tau <= 1 (a fraction of the run).")
    _check_steps("grid", grid, 2)
    norms = np.asarray(norms, dtype=np.float64)
    if norms.ndim != 1:
        raise ValueError(f"norms must be a 1-D sequence, got shape {norms.shape}.")
    norms = norms[np.isfinite(norms)][_TRIMMED_ENDS:-_TRIMMED_ENDS]
    if norms.size < 2:
        raise ValueError(
            f"norms needs at least {2 * _TRIMMED_ENDS + 2} finite entries (the first and last "
            f"{_TRIMMED_ENDS} are dropped): log the gradient norm on more steps."
        )
    smoothed = _median_smooth(_resample(norms, grid), tau)
    weights = np.maximum(smoothed, _NORM_FLOOR) ** -float(ord)
    tail_sums = np.cumsum(weights[::-1])[::-1]
    schedule = np.zeros(grid)
    schedule[:-1] = weights[:-1] * tail_sums[1:]
    return schedule / schedule.max()


def refined_schedule(base_lr: Any, table: Any, total_steps: int) -> optax.Schedule:
    r"""The learning-rate schedule :math:`\eta_t = \eta_{\text{base}}\, s(t / T)`.

    :math:`s` linearly interpolates ``table`` (the output of :func:`refine_schedule`) at
    equispaced fractions of the run; after :math:`T` steps the rate stays at the table's last value
    (0 for a refined table). Use it as any optimizer's ``learning_rate``.

    Args:
      base_lr: :math:`\eta_{\text{base}}`, the peak learning rate, positive and finite (a number
        or a scalar array).
      table: the schedule's values at fractions :math:`0, \frac{1}{K-1}, \dots, 1` of the run.
      total_steps: :math:`T`, the number of steps of this run.

    Returns:
      An ``optax.Schedule``.

    Examples:
      >>> import numpy as np
      >>> import optax
      >>> from salsa_optax import refined_schedule
      >>> schedule = refined_schedule(0.1, np.array([0.5, 1.0, 0.0]), total_steps=100)
      >>> [round(float(schedule(t)), 3) for t in (0, 25, 50, 75, 100)]
      [0.05, 0.075, 0.1, 0.05, 0.0]
      >>> optimizer = optax.adam(learning_rate=schedule)
    """
    _check_rate("base_lr", base_lr)
    _check_steps("total_steps", total_steps, 1)
    table = np.asarray(table)
    if table.ndim != 1 or table.size < 2 or not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError(
            "table must be a 1-D array of at least 2 finite, non-negative values: pass the "
            "output of refine_schedule."
        )
    values = jnp.asarray(table)
    fractions = jnp.linspace(0.0, 1.0, table.size)

    def schedule(count):
        return base_lr * jnp.interp(count / total_steps, fractions, values)

    return schedule


def _resample(values: np.ndarray, size: int) -> np.ndarray:
    """Linear interpolation of a sequence onto ``size`` equispaced points of the same span."""
    return np.interp(np.linspace(0.0, 1.0, size), np.linspace(0.0, 1.0, values.size), values)


def _median_smooth(values: np.ndarray, tau: float) -> np.ndarray:
    """Running median over ``tau`` of the sequence, with the reference's boundary handling."""
    width = 2 * (int(tau * values.size) // 2) + 1
    pad = 2 * width
    # Mirroring the end keeps the final trend (rising or falling) instead of flattening it.
    extended = np.pad(values, (0, pad), mode="reflect")
    return ndimage.median_filter(extended, size=width, mode="nearest")[:-pad]


def _check_rate(name: str, value: Any) -> None:
    validation.check_hyperparameter(name, value, lambda x: 0 < x < math.inf, f"0 < {name} < inf")


def _check_ord(ord: Any) -> None:
    if isinstance(ord, jax.core.Tracer):
        raise TypeError(
            "ord selects the norm and cannot be traced: under optax.inject_hyperparams, pass "
            "static_args='ord'."
        )
    if ord not in (1, 2):
        raise ValueError(f"ord={ord!r} must be 2 (SGD-type optimizers) or 1 (Adam-type).")


def _check_steps(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
