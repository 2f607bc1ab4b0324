"""Layer-wise step sizes from the curvature of diagonal Hessian blocks (Bahamou & Goldfarb, 2023).

Each parameter leaf is a block :math:`l` with its own step size, chosen to minimise the
block-diagonal quadratic model of the loss along the direction of a base method (SGD with momentum,
AdamW). The curvature along the direction comes from Hessian-vector products on the same batch.
"""

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from salsa_optax._src import validation

_ESTIMATORS = ("rademacher", "exact")


class LayerwiseCurvatureInfo(NamedTuple):
    """Diagnostics of :func:`scale_by_layerwise_curvature`, one scalar per parameter leaf.

    Attributes:
      numerator: :math:`n_l = \\max(-\\langle g_l, d_l\\rangle, 0)` at the last refresh.
      curvature: :math:`c_l`, the measured :math:`d_l^\\top H_{ll} d_l`, at the last refresh.
      refreshed: whether this step measured the curvature (bool).
      num_nonfinite_skipped: steps skipped so far because the loss, gradient or direction was not
        finite (int32).
    """

    numerator: Any
    curvature: Any
    refreshed: jax.Array
    num_nonfinite_skipped: jax.Array


class ScaleByLayerwiseCurvatureState(NamedTuple):
    """State of :func:`scale_by_layerwise_curvature`.

    Attributes:
      count: steps taken (int32).
      learning_rate: :math:`\\alpha_l`, one step size per parameter leaf (a tree of scalars shaped
        like the parameters' tree, at least float32).
      numerator_ema: :math:`\\bar n_l`, moving average of the numerators (same tree).
      curvature_ema: :math:`\\bar c_l`, moving average of the curvatures (same tree).
      num_refreshes: measurements averaged into the moving averages (int32).
      key: PRNG key of the Rademacher signs (uint32[2]).
      info: a :class:`LayerwiseCurvatureInfo`.
    """

    count: jax.Array
    learning_rate: Any
    numerator_ema: Any
    curvature_ema: Any
    num_refreshes: jax.Array
    key: jax.Array
    info: LayerwiseCurvatureInfo


def scale_by_layerwise_curvature(
    smoothing: Any = 0.9,
    damping: Any = 0.0,
    initial_learning_rate: Any = 0.0,
    max_learning_rate: Any = 10.0,
    refresh_every: Any = 1,
    estimator: str = "rademacher",
    seed: Any = 0,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales each parameter leaf of a direction by a step size from its Hessian block.

    The incoming updates are the direction :math:`d` in update form (a descent direction: chain
    ``optax.scale(-1.0)`` after a gradient-form transform). For each leaf :math:`l`, the quadratic
    model :math:`f(w + \sum_l \alpha_l d_l) \approx f(w) + \sum_l \alpha_l \langle g_l, d_l\rangle
    + \tfrac12 \sum_l \alpha_l^2\, d_l^\top H_{ll} d_l` is minimised by
    :math:`\alpha_l = -\langle g_l, d_l\rangle / d_l^\top H_{ll} d_l`. With safeguards, on a
    refresh step:

    .. math::
      n_l &= \max(-\langle g_l, d_l\rangle, 0), \qquad c_l \approx d_l^\top H_{ll} d_l \\
      \bar n_l &\leftarrow \beta \bar n_l + (1 - \beta) n_l, \qquad
      \bar c_l \leftarrow \beta \bar c_l + (1 - \beta) c_l \\
      \alpha_l &\leftarrow \mathrm{clip}\Big(\frac{\hat n_l}{\hat c_l + \lambda \|d_l\|^2},\
      0, \alpha_{\max}\Big) \ \text{ if } \hat c_l > 0, \text{ else unchanged}

    (:math:`\hat\cdot` bias-corrected), and every step returns :math:`u_l = \alpha_l d_l`.
    Curvatures come from Hessian-vector products of ``value_fn`` (``jax.jvp`` of ``jax.grad``,
    same batch): ``estimator="exact"`` takes one per leaf, :math:`c_l = \langle d_l, (H v_l)_l
    \rangle` with :math:`v_l` equal to :math:`d` on leaf :math:`l` and 0 elsewhere;
    ``"rademacher"`` takes one in all, :math:`v = \sum_l \xi_l d_l` with random signs
    :math:`\xi_l = \pm 1` and :math:`c_l = \xi_l \langle d_l, (H v)_l \rangle`, unbiased since the
    cross-block terms cancel in expectation. A refresh runs every ``refresh_every`` steps (the first
    step included) inside ``lax.cond``; other steps reuse :math:`\alpha_l` and cost nothing extra.

    A step whose loss, gradient or direction is not finite returns zero updates and leaves the state
    unchanged, except its ``info`` (``refreshed`` false, ``num_nonfinite_skipped`` counted). A
    refresh whose measurements are not finite is discarded (the step uses the previous step sizes).

    Args:
      smoothing: :math:`\beta`, the decay of the moving averages (0 uses each measurement alone).
      damping: :math:`\lambda \ge 0`, added curvature per unit squared length of the direction.
      initial_learning_rate: :math:`\alpha_l` before the first positive curvature is measured.
      max_learning_rate: :math:`\alpha_{\max}`.
      refresh_every: steps between curvature measurements.
      estimator: ``"rademacher"`` (one Hessian-vector product) or ``"exact"`` (one per leaf).
      seed: seed of the Rademacher signs.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes, as SaLSa's does,
      ``value`` (the loss at ``params``), ``grad`` (its gradient), ``value_fn`` (``params,
      **kwargs -> loss`` on the same batch, twice differentiable) and extra keyword arguments, of
      which those that ``value_fn`` accepts are passed to it.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from salsa_optax import scale_by_layerwise_curvature
      >>> def loss(params, scale):   # curvature 4 * scale for "a", scale for "b"
      ...   return scale * (2.0 * jnp.sum(params["a"] ** 2) + 0.5 * jnp.sum(params["b"] ** 2))
      >>> solver = optax.chain(optax.scale(-1.0), scale_by_layerwise_curvature(estimator="exact"))
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(3)}
      >>> state = solver.init(params)
      >>> value, grad = jax.value_and_grad(loss)(params, scale=2.0)
      >>> updates, state = solver.update(
      ...     grad, state, params, value=value, grad=grad, value_fn=loss, scale=2.0)
      >>> optax.tree_utils.tree_get(state, "learning_rate")   # 1 / curvature per leaf
      {'a': Array(0.125, dtype=float32), 'b': Array(0.5, dtype=float32)}
      >>> optax.apply_updates(params, updates)   # the minimum, in one step
      {'a': Array([0., 0.], dtype=float32), 'b': Array([0., 0., 0.], dtype=float32)}

    References:
      Bahamou, Goldfarb, `Layer-wise Adaptive Step-Sizes for Stochastic First-Order Methods for
      Deep Learning <https://arxiv.org/abs/2305.13664>`_, 2023
    """
    _check_hyperparameters(
        smoothing, damping, initial_learning_rate, max_learning_rate, refresh_every, estimator, seed
    )

    def init_fn(params):
        def per_leaf(value):
            return jax.tree.map(lambda x: _stat(value, x.dtype), params)

        return ScaleByLayerwiseCurvatureState(
            count=jnp.zeros((), jnp.int32),
            learning_rate=per_leaf(initial_learning_rate),
            numerator_ema=per_leaf(0.0),
            curvature_ema=per_leaf(0.0),
            num_refreshes=jnp.zeros((), jnp.int32),
            key=jax.random.PRNGKey(seed),
            info=LayerwiseCurvatureInfo(
                numerator=per_leaf(0.0),
                curvature=per_leaf(0.0),
                refreshed=jnp.zeros((), bool),
                num_nonfinite_skipped=jnp.zeros((), jnp.int32),
            ),
        )

    def update_fn(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra):
        validation.check_line_search_args(
            "scale_by_layerwise_curvature", params, value, grad, value_fn, updates
        )
        loss = functools.partial(value_fn, **validation.value_fn_kwargs(value_fn, extra))
        finite = validation.all_finite((value, updates, grad))

        def refresh(state):
            key, subkey = jax.random.split(state.key)
            numerator = jax.tree.map(
                lambda g, d: jnp.maximum(-optax.tree.vdot(g, d), 0), grad, updates
            )
            curvature = _block_curvatures(loss, params, updates, estimator, subkey)
            num_refreshes = state.num_refreshes + 1
            numerator_ema = optax.tree.update_moment(numerator, state.numerator_ema, smoothing, 1)
            curvature_ema = optax.tree.update_moment(curvature, state.curvature_ema, smoothing, 1)
            step_sizes = jax.tree.map(
                functools.partial(_step_size, damping=damping, max_learning_rate=max_learning_rate),
                state.learning_rate,
                optax.tree.bias_correction(numerator_ema, smoothing, num_refreshes),
                optax.tree.bias_correction(curvature_ema, smoothing, num_refreshes),
                jax.tree.map(lambda d: optax.tree.vdot(d, d), updates),
            )
            measured = state._replace(
                learning_rate=step_sizes,
                numerator_ema=numerator_ema,
                curvature_ema=curvature_ema,
                num_refreshes=num_refreshes,
                info=state.info._replace(
                    numerator=numerator, curvature=curvature, refreshed=jnp.array(True)
                ),
            )
            new_state = optax.tree.where(
                validation.all_finite((numerator, curvature)), measured, _not_refreshed(state)
            )
            return optax.tree.cast_like(new_state._replace(key=key), state)

        due = finite & (state.count % refresh_every == 0)
        new_state = jax.lax.cond(due, refresh, _not_refreshed, state)
        new_updates = jax.tree.map(
            lambda a, d: jnp.where(finite, a * d, 0).astype(d.dtype),
            new_state.learning_rate,
            updates,
        )
        new_state = new_state._replace(
            count=jnp.where(finite, optax.safe_increment(state.count), state.count),
            info=new_state.info._replace(
                num_nonfinite_skipped=state.info.num_nonfinite_skipped + (~finite).astype(jnp.int32)
            ),
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def layerwise_curvature_sgd(
    momentum: Any = 0.9,
    nesterov: bool = False,
    smoothing: Any = 0.9,
    damping: Any = 0.0,
    initial_learning_rate: Any = 0.0,
    max_learning_rate: Any = 10.0,
    refresh_every: Any = 1,
    estimator: str = "rademacher",
    seed: Any = 0,
) -> optax.GradientTransformationExtraArgs:
    r"""SGD with momentum and layer-wise curvature step sizes, no learning rate to tune.

    The direction is :math:`d = -m`, :math:`m \leftarrow \mu m + g` (``optax.trace``), scaled per
    leaf by :func:`scale_by_layerwise_curvature` (see it for the other arguments and the call), and
    the update is :math:`u_l = (1 - \mu)\, \alpha_l d_l`. The factor :math:`1 - \mu` is ours:
    :math:`\alpha_l` minimises the model for one step along :math:`d`, but momentum carries
    :math:`d` into the following steps with total weight :math:`1 / (1 - \mu)`, so without it the
    steps overshoot by that factor (on a small MLP they diverge).

    Args:
      momentum: :math:`\mu`, in :math:`[0, 1)`.
      nesterov: use Nesterov momentum.
      smoothing: decay of the curvature moving averages.
      damping: added curvature per unit squared length of the direction.
      initial_learning_rate: step size before the first positive curvature is measured.
      max_learning_rate: largest step size.
      refresh_every: steps between curvature measurements.
      estimator: ``"rademacher"`` or ``"exact"``.
      seed: seed of the Rademacher signs.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from salsa_optax import layerwise_curvature_sgd
      >>> def loss(params): return jnp.sum(params["w"] ** 2) + 10 * jnp.sum(params["b"] ** 2)
      >>> solver = layerwise_curvature_sgd(momentum=0.5)
      >>> params = {"w": jnp.ones(3), "b": jnp.ones(2)}
      >>> state = solver.init(params)
      >>> @jax.jit
      ... def step(params, state):
      ...   value, grad = jax.value_and_grad(loss)(params)
      ...   updates, state = solver.update(
      ...       grad, state, params, value=value, grad=grad, value_fn=loss)
      ...   return optax.apply_updates(params, updates), state
      >>> for _ in range(50):
      ...   params, state = step(params, state)
      >>> bool(loss(params) < 1e-6)
      True
    """
    _check_decay("momentum", momentum)
    return optax.chain(
        optax.trace(decay=momentum, nesterov=nesterov),
        optax.scale(-1.0),
        scale_by_layerwise_curvature(
            smoothing=smoothing,
            damping=damping,
            initial_learning_rate=initial_learning_rate,
            max_learning_rate=max_learning_rate,
            refresh_every=refresh_every,
            estimator=estimator,
            seed=seed,
        ),
        optax.scale(1 - momentum),
    )


def layerwise_curvature_adamw(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    smoothing: Any = 0.9,
    damping: Any = 0.0,
    initial_learning_rate: Any = 0.0,
    max_learning_rate: Any = 10.0,
    refresh_every: Any = 1,
    estimator: str = "rademacher",
    seed: Any = 0,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW with layer-wise curvature step sizes, no learning rate to tune.

    The direction is :math:`d = -(\hat m / (\sqrt{\hat v} + \epsilon) + \lambda_{wd} w)`: the
    decoupled weight decay is part of the direction, so the curvature is measured along the step
    actually taken. The update is :math:`u_l = (1 - \beta_1)\, \alpha_l d_l`, with the momentum
    correction explained in :func:`layerwise_curvature_sgd`; the weights decay by
    :math:`(1 - \beta_1) \alpha_l \lambda_{wd}` per step. See :func:`scale_by_layerwise_curvature`
    for the other arguments and the call.

    Args:
      b1: decay of Adam's first moment.
      b2: decay of Adam's second moment.
      eps: added to Adam's denominator.
      weight_decay: :math:`\lambda_{wd}`.
      mask: which leaves to decay, as in ``optax.adamw``.
      smoothing: decay of the curvature moving averages.
      damping: added curvature per unit squared length of the direction.
      initial_learning_rate: step size before the first positive curvature is measured.
      max_learning_rate: largest step size.
      refresh_every: steps between curvature measurements.
      estimator: ``"rademacher"`` or ``"exact"``.
      seed: seed of the Rademacher signs.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from salsa_optax import layerwise_curvature_adamw
      >>> def loss(params): return jnp.sum((params["w"] - 1.0) ** 2)
      >>> solver = layerwise_curvature_adamw(weight_decay=0.0)
      >>> params = {"w": jnp.zeros(3)}
      >>> state = solver.init(params)
      >>> @jax.jit
      ... def step(params, state):
      ...   value, grad = jax.value_and_grad(loss)(params)
      ...   updates, state = solver.update(
      ...       grad, state, params, value=value, grad=grad, value_fn=loss)
      ...   return optax.apply_updates(params, updates), state
      >>> for _ in range(50):
      ...   params, state = step(params, state)
      >>> bool(loss(params) < 0.1)   # from 3.0
      True
    """
    _check_decay("b1", b1)
    _check_decay("b2", b2)
    validation.check_hyperparameter("eps", eps, lambda x: 0 < x < math.inf, "0 < eps < inf")
    validation.check_hyperparameter(
        "weight_decay", weight_decay, lambda x: 0 <= x < math.inf, "0 <= weight_decay < inf"
    )
    # The decays as arrays of the default float type, as optax.inject_hyperparams gives them:
    # Adam's bias correction 1 - b2**t then rounds the same way with and without it.
    b1, b2 = jnp.asarray(b1), jnp.asarray(b2)
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale(-1.0),
        scale_by_layerwise_curvature(
            smoothing=smoothing,
            damping=damping,
            initial_learning_rate=initial_learning_rate,
            max_learning_rate=max_learning_rate,
            refresh_every=refresh_every,
            estimator=estimator,
            seed=seed,
        ),
        optax.scale(1 - b1),
    )


def _block_curvatures(
    loss: Callable[[Any], jax.Array], params: Any, direction: Any, estimator: str, key: jax.Array
) -> Any:
    """:math:`d_l^\\top H_{ll} d_l` for every leaf :math:`l`, exactly or by one random probe."""
    leaves, treedef = jax.tree.flatten(direction)
    if estimator == "exact":
        curvatures = []
        for i, d in enumerate(leaves):
            probe = [d if j == i else jnp.zeros_like(x) for j, x in enumerate(leaves)]
            product = jax.tree.leaves(_hvp(loss, params, probe, treedef))[i]
            curvatures.append(optax.tree.vdot(d, product))
        return treedef.unflatten(curvatures)
    signs = jax.random.rademacher(key, (len(leaves),), jnp.float32)
    return _probe_curvatures(loss, params, direction, signs)


def _probe_curvatures(
    loss: Callable[[Any], jax.Array], params: Any, direction: Any, signs: jax.Array
) -> Any:
    """:math:`\\xi_l \\langle d_l, (H v)_l\\rangle`, :math:`v = \\sum_l \\xi_l d_l`: one HVP."""
    leaves, treedef = jax.tree.flatten(direction)
    probe = [(signs[i] * d).astype(d.dtype) for i, d in enumerate(leaves)]
    products = jax.tree.leaves(_hvp(loss, params, probe, treedef))
    return treedef.unflatten(
        [
            signs[i] * optax.tree.vdot(d, hv)
            for i, (d, hv) in enumerate(zip(leaves, products, strict=True))
        ]
    )


def _hvp(
    loss: Callable[[Any], jax.Array], params: Any, leaves: list[jax.Array], treedef: Any
) -> Any:
    """Hessian of ``loss`` at ``params`` times the tree of ``leaves`` (forward-over-reverse)."""
    return jax.jvp(jax.grad(loss), (params,), (treedef.unflatten(leaves),))[1]


def _step_size(
    previous: jax.Array,
    numerator: jax.Array,
    curvature: jax.Array,
    sq_norm: jax.Array,
    *,
    damping: Any,
    max_learning_rate: Any,
) -> jax.Array:
    """The safeguarded minimiser of one block's quadratic model; kept when curvature <= 0."""
    step = jnp.clip(numerator / (curvature + damping * sq_norm), 0, max_learning_rate)
    return jnp.where(curvature > 0, step, previous)


def _not_refreshed(state: ScaleByLayerwiseCurvatureState) -> ScaleByLayerwiseCurvatureState:
    return state._replace(info=state.info._replace(refreshed=jnp.array(False)))


def _stat(value: Any, dtype: Any) -> jax.Array:
    """A per-leaf scalar statistic, in at least float32."""
    return jnp.asarray(value, jnp.promote_types(dtype, jnp.float32))


def _check_hyperparameters(
    smoothing, damping, initial_learning_rate, max_learning_rate, refresh_every, estimator, seed
) -> None:
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} must be one of {_ESTIMATORS}.")
    check = validation.check_hyperparameter
    check("smoothing", smoothing, lambda x: 0 <= x < 1, "0 <= smoothing < 1")
    check("damping", damping, lambda x: 0 <= x < math.inf, "0 <= damping < inf")
    check(
        "max_learning_rate",
        max_learning_rate,
        lambda x: 0 < x < math.inf,
        "0 < max_learning_rate < inf",
    )
    check(
        "initial_learning_rate",
        initial_learning_rate,
        lambda x: 0 <= x < math.inf,
        "0 <= initial_learning_rate < inf (0: no step until a positive curvature is measured)",
    )
    concrete = not any(
        isinstance(x, jax.core.Tracer) for x in (initial_learning_rate, max_learning_rate)
    )
    if concrete and initial_learning_rate > max_learning_rate:
        raise ValueError(
            f"initial_learning_rate={initial_learning_rate!r} exceeds "
            f"max_learning_rate={max_learning_rate!r}: lower it or raise the maximum."
        )
    for name, value in (("refresh_every", refresh_every), ("seed", seed)):
        minimum = 1 if name == "refresh_every" else 0
        check(
            name,
            value,
            lambda x, minimum=minimum: _is_integer(x) and x >= minimum,
            f"{name} is an integer >= {minimum}",
        )


def _check_decay(name: str, value: Any) -> None:
    validation.check_hyperparameter(name, value, lambda x: 0 <= x < 1, f"0 <= {name} < 1")


def _is_integer(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) or (isinstance(x, float) and x.is_integer())
