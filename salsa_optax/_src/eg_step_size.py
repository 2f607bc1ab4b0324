"""Step-size adaptation by exponentiated-gradient updates (Amid et al., 2022)."""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from salsa_optax._src import validation

# Added to both norms of the normalised scale signal, as in the reference, so a zero vector
# (the velocity on the first step) gives a zero signal.
_NORM_EPS = 1e-10
_GRANULARITIES = ("global", "per_leaf")
_SCALE_SIGNALS = ("previous_update", "gradient_ema")


class EGStepSizeInfo(NamedTuple):
    """Diagnostics of the last step of :func:`scale_by_eg_step_size`.

    Attributes:
      alignment: the signal :math:`a` that moved the scale (a scalar, or one per parameter leaf
        with ``scale_granularity="per_leaf"``).
      num_nonfinite_skipped: steps skipped so far because the incoming updates were not finite
        (int32).
    """

    alignment: Any
    num_nonfinite_skipped: jax.Array


class ScaleByEGStepSizeState(NamedTuple):
    """State of :func:`scale_by_eg_step_size`.

    Attributes:
      count: steps taken (int32).
      grad_ema: :math:`\\bar d`, the moving average of the incoming updates (params-shaped).
      gains: :math:`p`, the per-coordinate gains (params-shaped, at least float32).
      velocity: :math:`h`, the update before the scale (params-shaped).
      scale: :math:`s`, the step-size scale (a scalar, or one per leaf; at least float32).
      learning_rate: :math:`\\eta s`, the effective step size of the last step (same shape as
        ``scale``).
      info: an :class:`EGStepSizeInfo`.
    """

    count: jax.Array
    grad_ema: optax.Updates
    gains: optax.Updates
    velocity: optax.Updates
    scale: Any
    learning_rate: Any
    info: EGStepSizeInfo


def scale_by_eg_step_size(
    *,
    learning_rate: optax.ScalarOrSchedule = 1.0,
    momentum: Any = 0.0,
    beta: Any = 0.9,
    gain_learning_rate: Any = 0.01,
    scale_learning_rate: Any = 0.001,
    initial_gain: Any = 1.0,
    min_gain: Any = 0.01,
    max_gain: Any = 100.0,
    initial_scale: Any = 1.0,
    min_scale: Any = 0.1,
    max_scale: Any = 10.0,
    use_directions: bool = True,
    use_signs: bool = True,
    scale_granularity: str = "global",
    scale_signal: str = "previous_update",
) -> optax.GradientTransformationExtraArgs:
    r"""Adapts a global step-size scale and per-coordinate gains by exponentiated gradient.

    The incoming updates :math:`d_t` are a direction in update (descent) form, the output of a
    full optimizer: ``optax.sgd(1.0)`` gives :math:`d_t = -g_t`. Each step

    .. math::
      s &\leftarrow \mathrm{clip}\big(s \exp(\eta_s\, a_t),\ s_{\min}, s_{\max}\big), \qquad
      a_t = \cos(d_t, h) \\
      p &\leftarrow \mathrm{clip}\big(p \odot \exp(\eta_p \operatorname{sign}(d_t) \odot
      \operatorname{sign}(\bar d)),\ p_{\min}, p_{\max}\big) \\
      h &\leftarrow \mu h + \eta\, p \odot d_t, \qquad
      \bar d \leftarrow \beta \bar d + (1 - \beta) d_t, \qquad u_t = s\, h

    (old :math:`h` and :math:`\bar d` on the right of the first two lines). The scale grows while
    the direction keeps pointing along the previous update (steps too short) and shrinks when it
    turns against it (overshoot); each gain does the same per coordinate with the direction's
    average. With ``use_directions=False`` the scale signal is the raw :math:`\langle d_t, h
    \rangle`; with ``use_signs=False`` the gain signal is :math:`d_t \odot \bar d / (1 -
    \beta^{\max(t-1, 1)})`. :math:`\cos(x, y) = \langle x, y\rangle / ((\|x\| + 10^{-10})(\|y\| +
    10^{-10}))`. After ``optax.sgd(1.0)`` every signal equals the reference's, written with
    :math:`-g_t` (both factors of each product change sign); after another optimizer the signals
    follow that optimizer's direction.

    A step whose incoming updates are not finite returns zero updates and leaves the state
    unchanged, except ``info.num_nonfinite_skipped``.

    Args:
      learning_rate: :math:`\eta`, multiplying the incoming updates (a number or a schedule).
        Leave it at 1 after an optimizer with its own learning rate.
      momentum: :math:`\mu`; leave it at 0 after an optimizer with momentum of its own.
      beta: :math:`\beta`, the decay of the average direction.
      gain_learning_rate: :math:`\eta_p`.
      scale_learning_rate: :math:`\eta_s`.
      initial_gain: :math:`p_0`.
      min_gain: :math:`p_{\min}`.
      max_gain: :math:`p_{\max}`.
      initial_scale: :math:`s_0`.
      min_scale: :math:`s_{\min}`.
      max_scale: :math:`s_{\max}`.
      use_directions: normalise the scale signal to a cosine.
      use_signs: use only the signs of the gain signal.
      scale_granularity: ``"global"`` for one scale (the paper), ``"per_leaf"`` for one per
        parameter leaf (the reference implementation's per-tensor scale).
      scale_signal: ``"previous_update"`` aligns :math:`d_t` with the velocity :math:`h` (the
        reference); ``"gradient_ema"`` aligns :math:`d_t` with the average direction
        :math:`\bar d`.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; it needs no extra arguments.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from salsa_optax import scale_by_eg_step_size
      >>> def f(x): return jnp.sum((x - 1.0) ** 2)
      >>> solver = optax.chain(
      ...     optax.sgd(1.0), scale_by_eg_step_size(learning_rate=0.1, momentum=0.5))
      >>> params = jnp.zeros(3)
      >>> state = solver.init(params)
      >>> for _ in range(30):
      ...   updates, state = solver.update(jax.grad(f)(params), state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> step_size = optax.tree_utils.tree_get(state, "learning_rate")
      >>> print(f"loss {f(params):.0e}, step size {step_size:.4f}")
      loss 2e-09, step size 0.1009

      After Adam (its own learning rate and momentum), with one scale per leaf:

      >>> solver = optax.chain(
      ...     optax.adam(1e-3), scale_by_eg_step_size(scale_granularity="per_leaf"))

    References:
      Amid, Anil, Fifty, Warmuth, `Step-size Adaptation Using Exponentiated Gradient Updates
      <https://arxiv.org/abs/2202.00145>`_, 2022
    """
    _check_hyperparameters(locals())
    per_leaf = scale_granularity == "per_leaf"

    def init_fn(params):
        if per_leaf:
            scale = jax.tree.map(lambda x: _full((), initial_scale, x.dtype), params)
        else:
            scale = _full((), initial_scale, optax.tree.dtype(params, "highest"))
        return ScaleByEGStepSizeState(
            count=jnp.zeros((), jnp.int32),
            grad_ema=optax.tree.zeros_like(params),
            gains=jax.tree.map(lambda x: _full(x.shape, initial_gain, x.dtype), params),
            velocity=optax.tree.zeros_like(params),
            scale=scale,
            learning_rate=jax.tree.map(lambda s: s * _value(learning_rate, 0), scale),
            info=EGStepSizeInfo(
                alignment=jax.tree.map(jnp.zeros_like, scale),
                num_nonfinite_skipped=jnp.zeros((), jnp.int32),
            ),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = optax.safe_increment(state.count)
        eta = _value(learning_rate, state.count)

        reference = state.velocity if scale_signal == "previous_update" else state.grad_ema
        if per_leaf:
            alignment = jax.tree.map(_alignment(use_directions), updates, reference)
        else:
            alignment = _alignment(use_directions)(updates, reference)
        scale = jax.tree.map(
            lambda s, a: jnp.clip(s * jnp.exp(scale_learning_rate * a), min_scale, max_scale),
            state.scale,
            alignment,
        )

        if use_signs:
            gain_signal = jax.tree.map(
                lambda d, m: jnp.sign(d) * jnp.sign(m), updates, state.grad_ema
            )
        else:
            debias = 1 - beta ** jnp.maximum(count - 1, 1)
            gain_signal = jax.tree.map(lambda d, m: d * m / debias, updates, state.grad_ema)
        gains = jax.tree.map(
            lambda p, x: jnp.clip(p * jnp.exp(gain_learning_rate * x), min_gain, max_gain),
            state.gains,
            gain_signal,
        )

        velocity = jax.tree.map(
            lambda h, p, d: momentum * h + p * eta * d, state.velocity, gains, updates
        )
        scales = scale if per_leaf else jax.tree.map(lambda _: scale, velocity)
        new_updates = jax.tree.map(lambda s, h: s * h, scales, velocity)

        candidate = ScaleByEGStepSizeState(
            count=count,
            grad_ema=optax.tree.update_moment(updates, state.grad_ema, beta, 1),
            gains=gains,
            velocity=velocity,
            scale=scale,
            learning_rate=jax.tree.map(lambda s: eta * s, scale),
            info=EGStepSizeInfo(alignment, state.info.num_nonfinite_skipped),
        )
        finite = validation.all_finite(updates)
        new_state = optax.tree.where(finite, candidate, state)
        new_state = new_state._replace(
            info=new_state.info._replace(
                num_nonfinite_skipped=state.info.num_nonfinite_skipped + (~finite).astype(jnp.int32)
            )
        )
        new_updates = optax.tree.where(finite, new_updates, optax.tree.zeros_like(new_updates))
        return (
            optax.tree.cast_like(new_updates, updates),
            optax.tree.cast_like(new_state, state),
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def egdd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: Any,
    beta: Any = 0.9,
    gain_learning_rate: Any = 0.01,
    scale_learning_rate: Any = 0.001,
    initial_gain: Any = 1.0,
    min_gain: Any = 0.01,
    max_gain: Any = 100.0,
    initial_scale: Any = 1.0,
    min_scale: Any = 0.1,
    max_scale: Any = 10.0,
    use_directions: bool = True,
    use_signs: bool = True,
    scale_granularity: str = "global",
) -> optax.GradientTransformationExtraArgs:
    r"""SGD with momentum whose step size and per-coordinate gains adapt by EG ("EG delta-delta").

    .. math::
      h \leftarrow \mu h - \eta\, p \odot g_t, \qquad w \leftarrow w + s\, h

    with :math:`s` and :math:`p` adapted as in :func:`scale_by_eg_step_size` (whose arguments
    these are): ``chain(scale(-1), scale_by_eg_step_size(...))``. The defaults are those of the
    reference implementation.

    Args:
      learning_rate: :math:`\eta` (a number or a schedule).
      momentum: :math:`\mu`.
      beta: decay of the gradient average used by the gains.
      gain_learning_rate: :math:`\eta_p`.
      scale_learning_rate: :math:`\eta_s`.
      initial_gain: :math:`p_0`.
      min_gain: lower bound of the gains.
      max_gain: upper bound of the gains.
      initial_scale: :math:`s_0`.
      min_scale: lower bound of the scale.
      max_scale: upper bound of the scale.
      use_directions: normalise the scale signal to a cosine.
      use_signs: use only the signs of the gain signal.
      scale_granularity: ``"global"`` or ``"per_leaf"``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from salsa_optax import egdd
      >>> solver = egdd(learning_rate=0.1, momentum=0.9, beta=0.1)
      >>> params = jnp.array([0.5, 1.0])
      >>> state = solver.init(params)
      >>> for grad in (jnp.array([0.1, -0.5]), jnp.array([-1.0, -1.5])):
      ...   updates, state = solver.update(grad, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> params
      Array([0.580..., 1.246...], dtype=float32)

    References:
      Amid, Anil, Fifty, Warmuth, `Step-size Adaptation Using Exponentiated Gradient Updates
      <https://arxiv.org/abs/2202.00145>`_, 2022
    """
    return optax.chain(
        optax.scale(-1.0),
        scale_by_eg_step_size(
            learning_rate=learning_rate,
            momentum=momentum,
            beta=beta,
            gain_learning_rate=gain_learning_rate,
            scale_learning_rate=scale_learning_rate,
            initial_gain=initial_gain,
            min_gain=min_gain,
            max_gain=max_gain,
            initial_scale=initial_scale,
            min_scale=min_scale,
            max_scale=max_scale,
            use_directions=use_directions,
            use_signs=use_signs,
            scale_granularity=scale_granularity,
        ),
    )


def _alignment(use_directions: bool):
    """``(d, r) -> <d, r>``, divided by both norms (each plus 1e-10) with ``use_directions``."""

    def alignment(d, r):
        dot = optax.tree.vdot(d, r)
        if use_directions:
            dot = dot / ((optax.tree.norm(d) + _NORM_EPS) * (optax.tree.norm(r) + _NORM_EPS))
        return dot

    return alignment


def _full(shape: tuple[int, ...], value: Any, dtype: Any) -> jax.Array:
    """An array of ``value`` in ``dtype`` promoted to at least float32: EG factors ``exp(0.001 a)``
    would round to 1 in bfloat16."""
    return jnp.full(shape, value, jnp.promote_types(dtype, jnp.float32))


def _value(learning_rate: optax.ScalarOrSchedule, count: jax.Array) -> Any:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _check_hyperparameters(hyperparameters: dict[str, Any]) -> None:
    h = hyperparameters
    if h["scale_granularity"] not in _GRANULARITIES:
        raise ValueError(
            f"scale_granularity={h['scale_granularity']!r} must be one of {_GRANULARITIES}."
        )
    if h["scale_signal"] not in _SCALE_SIGNALS:
        raise ValueError(f"scale_signal={h['scale_signal']!r} must be one of {_SCALE_SIGNALS}.")
    for name in ("use_directions", "use_signs"):
        if not isinstance(h[name], bool):
            raise TypeError(f"{name}={h[name]!r} must be True or False.")
    check = validation.check_hyperparameter
    if not callable(h["learning_rate"]):
        check(
            "learning_rate",
            h["learning_rate"],
            lambda x: 0 < x < math.inf,
            "0 < learning_rate < inf",
        )
    check("momentum", h["momentum"], lambda x: 0 <= x < 1, "0 <= momentum < 1")
    check("beta", h["beta"], lambda x: 0 <= x < 1, "0 <= beta < 1")
    for name in ("gain_learning_rate", "scale_learning_rate"):
        check(name, h[name], lambda x: 0 <= x < math.inf, f"0 <= {name} < inf (0 freezes it)")
    for kind in ("gain", "scale"):
        for bound in ("min", "initial", "max"):
            name = f"{bound}_{kind}"
            check(
                name,
                h[name],
                lambda x: 0 < x < math.inf,
                f"0 < {name} < inf (EG is multiplicative)",
            )
        low, start, high = (h[f"min_{kind}"], h[f"initial_{kind}"], h[f"max_{kind}"])
        if not any(isinstance(x, jax.core.Tracer) for x in (low, start, high)) and not (
            low <= start <= high
        ):
            raise ValueError(
                f"min_{kind}={low!r} <= initial_{kind}={start!r} <= max_{kind}={high!r} must hold: "
                f"move initial_{kind} inside the bounds."
            )
