"""SaLSa as a stateful optax transformation: the smoothed Armijo search and its schedule."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from salsa_optax._src import armijo, search_frequency
from salsa_optax._src.control_flow import at_most_once
from salsa_optax._src.defaults import SEARCH_DEFAULTS as DEFAULTS
from salsa_optax._src.defaults import SearchDefaults
from salsa_optax._src.directions import Directions, incoming_direction
from salsa_optax._src.packing import Packed, pack, unpack
from salsa_optax._src.validation import (
    all_finite,
    check_hyperparameter,
    check_line_search_args,
    split_loss_and_aux,
    value_fn_kwargs,
)

# A value_fn whose loss at `params` differs from `value` by more than this (relative) disagrees.
VALUE_MISMATCH_RTOL = 1e-3
# With growth_margin, the stored step size grows at most by this factor per search.
MAX_MARGIN_GROWTH = 2.0
# With multiplier_distance, a leaf of n entries counts as scale-invariant while the mean over
# searches of n cos^2(g, w) is below this: a gradient uncorrelated with the leaf gives 1 on
# average, a leaf the loss depends on through its direction only gives float round-off.
SCALE_INVARIANCE_LEVEL = 1e-2
# With multiplier_noise, the decay of the running mean squares over the measurements (one after
# each search).
NOISE_AVERAGING = 0.9
# ... and a residual within this many units of round-off of the loss counts as zero.
ROUND_OFF_ULPS = 16


class SalsaInfo(NamedTuple):
    """Diagnostics of a SaLSa transform: the last step's, and running totals over the run.

    Attributes:
      searched: whether the last step ran the line search.
      search_outcome: the last step's: ``0`` skipped by the schedule, ``1`` accepted by the
        smoothed Armijo test, ``2`` accepted with an exactly zero loss decrease, ``3`` every trial
        rejected (no step, the next step searches; the stored step size kept, or before any
        search accepted a trial the one below the last trial), ``4`` bypassed
        (``reference_bypass`` only), ``5`` the direction was not a descent direction (no step,
        state kept), ``6`` ``value``, ``grad`` or the updates were not finite (no step, state
        kept).
      num_evaluations: calls of ``value_fn`` in the last step (the gradient evaluation made by
        the caller is not counted).
      num_backtracks: rejected trials in the last step.
      step_size: the step size multiplying the direction in the last step's update (with
        ``multiplier_distance``, that of the parameter leaf with the largest multiplier).
      armijo_margin: smallest ``|lhs - rhs| / |rhs|`` over the last step's tests (``inf`` when
        none).
      total_searches: steps that ran the line search so far.
      total_evaluations: calls of ``value_fn`` so far.
      total_backtracks: rejected trials so far.
      total_exhausted: searches so far whose every trial was rejected.
      total_nonfinite_skipped: steps skipped so far because ``value``, ``grad`` or the updates
        were not finite.
      total_nondescent_skipped: searching steps skipped so far because the direction's slope
        ``-<grad, direction>`` was not positive (e.g. updates in gradient form, see the README).
      total_value_mismatches: exhausted searches so far after which ``value_fn(params)`` differed
        from ``value``: ``value_fn`` does not evaluate the loss ``value`` and ``grad`` came from
        (another batch, another dropout key, a scaled loss).
    """

    searched: jax.Array  # bool
    search_outcome: jax.Array  # int32
    num_evaluations: jax.Array  # int32
    num_backtracks: jax.Array  # int32
    step_size: jax.Array  # float
    armijo_margin: jax.Array  # float
    total_searches: jax.Array  # int32
    total_evaluations: jax.Array  # int32
    total_backtracks: jax.Array  # int32
    total_exhausted: jax.Array  # int32
    total_nonfinite_skipped: jax.Array  # int32
    total_nondescent_skipped: jax.Array  # int32
    total_value_mismatches: jax.Array  # int32


_DISTANCE_ROWS = ("radial_sum", "radial_count", "multipliers", "rescale_exponents")


class DistanceState(NamedTuple):
    r"""How far each parameter leaf has moved from its start, for ``multiplier_distance`` and
    ``rescale_distance`` (the start itself is :attr:`ScaleBySalsaState.initial_params`).

    Its quantities are vectors with one entry per leaf of the parameters, in the order of
    ``jax.tree.leaves(params)``, stored as the rows of one array (a state's every array is an
    argument and a result of each call, and a Variable of its own in an ``nnx.Optimizer``); each
    reads as an attribute:

    - ``radial_sum``: per leaf, the sum over searches of :math:`n \cos^2(g, w)` (``n`` its size).
    - ``radial_count``: per leaf, the searches that measured it (those with :math:`g, w \ne 0`).
      A leaf whose mean is below ``SCALE_INVARIANCE_LEVEL`` is scale-invariant; while any leaf
      is, every multiplier is 1.
    - ``multipliers``: per leaf, the factor its steps take, as of the last search.
    - ``rescale_exponents``: with ``rescale_distance``, per leaf, the share :math:`\in [0, 1]` of
      the step direction's rescaling its steps take, as of the last search; else ``None``.

    Attributes:
      table: those rows (three, or four with ``rescale_exponents``), in the state's float type
        (a count is exact up to :math:`2^{24}` searches in float32).

    Examples:
      >>> distance = DistanceState.of(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))
      >>> distance.table.shape, distance.multipliers.tolist(), distance.rescale_exponents
      ((3, 2), [1.0, 1.0], None)
    """

    table: jax.Array

    @classmethod
    def of(
        cls, radial_sum: Any, radial_count: Any, multipliers: Any, rescale_exponents: Any = None
    ) -> "DistanceState":
        """The rows stacked, in ``radial_sum``'s float type."""
        rows = [radial_sum, radial_count, multipliers]
        if rescale_exponents is not None:
            rows.append(rescale_exponents)
        dtype = jnp.result_type(radial_sum)
        return cls(jnp.stack([jnp.asarray(row, dtype) for row in rows]))

    def with_rows(self, **rows: Any) -> "DistanceState":
        """The state with the rows named replaced."""
        return DistanceState.of(**({name: getattr(self, name) for name in _DISTANCE_ROWS} | rows))

    @property
    def radial_sum(self) -> jax.Array:
        return self.table[0]

    @property
    def radial_count(self) -> jax.Array:
        return self.table[1]

    @property
    def multipliers(self) -> jax.Array:
        return self.table[2]

    @property
    def rescale_exponents(self) -> jax.Array | None:
        return self.table[3] if len(self.table) > 3 else None


class NoiseState(NamedTuple):
    r"""How noisy the loss is, for ``multiplier_noise``.

    A search at step :math:`t` knows the loss of its batch at three places on the searched line
    (its value, slope and accepted trial), enough for a quadratic model of it; from the model it
    predicts :math:`\hat f_t(w_{t+1})`, the loss of its batch after its step. The next step's
    ``value`` gives the residual :math:`e = f_{t+1}(w_{t+1}) - \hat f_t(w_{t+1})`: on a
    deterministic loss the model's error alone (zero on a quadratic), on minibatches also the
    difference between two batches' losses at the same weights.

    Attributes:
      pending: whether the last step was a search whose residual the next ``value`` measures.
      predicted_value: :math:`\hat f_t(w_{t+1})`.
      linear_change: :math:`\langle g_t, w_{t+1} - w_t\rangle`, the step's first-order change.
      residual_sq: running mean (decay ``NOISE_AVERAGING``) of :math:`e^2`.
      linear_sq: running mean of the squared linear change over the same steps.
    """

    pending: jax.Array  # bool
    predicted_value: jax.Array  # float
    linear_change: jax.Array  # float
    residual_sq: jax.Array  # float
    linear_sq: jax.Array  # float

    def ratio(self) -> jax.Array:
        """The residual's root mean square over the linear change's (``nan`` before any)."""
        return jnp.sqrt(self.residual_sq / self.linear_sq)


def _noisy(noise: NoiseState, ratio: Any) -> jax.Array:
    """Whether the residual's root mean square exceeds ``ratio`` times the linear change's."""
    return noise.residual_sq > jnp.square(ratio) * noise.linear_sq


def _measure_noise(noise: NoiseState, value: jax.Array, finite: jax.Array) -> NoiseState:
    """``noise`` with the residual of the last search's prediction measured by ``value``.

    A non-finite step measures nothing and leaves the measurement pending.

    Examples:
      >>> f = jnp.float32
      >>> noise = NoiseState(jnp.bool_(True), f(0.5), f(-0.5), f(0.0), f(0.0))
      >>> measured = _measure_noise(noise, f(0.6), jnp.bool_(True))
      >>> [round(float(x), 4) for x in measured[3:]], bool(measured.pending)
      ([0.001, 0.025], False)
    """
    measure = noise.pending & finite
    residual = value - noise.predicted_value
    # A residual within the losses' round-off is no evidence of noise.
    round_off = ROUND_OFF_ULPS * jnp.finfo(value.dtype).eps * jnp.abs(value)
    residual = jnp.where(jnp.abs(residual) > round_off, residual, 0)
    a = NOISE_AVERAGING

    def averaged(mean_sq, sample):
        return jnp.where(measure, a * mean_sq + (1 - a) * jnp.square(sample), mean_sq)

    return noise._replace(
        pending=noise.pending & ~finite,
        residual_sq=averaged(noise.residual_sq, residual),
        linear_sq=averaged(noise.linear_sq, noise.linear_change),
    )


def _predicted_noise(
    noise: NoiseState,
    leaf_slopes: jax.Array,
    multipliers: Any,
    result: armijo.SearchResult,
    value: jax.Array,
    slope: jax.Array,
    decay_change: Any,
    along_searched_line: bool,
) -> NoiseState:
    r"""``noise`` with the prediction of a search's step, to be measured by the next ``value``.

    Along the searched line :math:`w + s d` the loss is modelled by the quadratic through the
    value, the slope :math:`-S` and the accepted trial, :math:`f(w) - S s + a s^2`; the step
    moves each leaf by its multiplier :math:`m_l` times :math:`\eta d_l`, and the model is read
    at the slope-weighted mean multiplier (exact on a quadratic when every leaf shares one).
    A step along another direction than the searched one is predicted to first order.

    Args:
      noise: the state after this step's measurement.
      leaf_slopes: per leaf (a vector), :math:`\langle g_l, d_l\rangle` of the direction moved
        along.
      multipliers: per leaf (a vector), or one for all, the multiplier the step applies.
      result: the search's.
      value: :math:`f(w)`.
      slope: :math:`S = -\langle g, d\rangle` of the searched direction.
      decay_change: :math:`\langle g, \tilde w - w\rangle`, the weight decay's first-order
        change (the trials start from the decayed :math:`\tilde w`).
      along_searched_line: whether the step moves along the searched direction (static).

    Examples:
      >>> f = jnp.float32
      >>> noise = NoiseState(jnp.bool_(False), f(0), f(0), f(0), f(0))
      >>> # f(s) = 1 - 2 s + s^2 along the line; the accepted trial at 0.5 decreased it by 0.75.
      >>> result = armijo.SearchResult(f(0.5), f(0.5), f(0), f(0.75), 1, 1, f(0), f(0.5), None)
      >>> doubled = _predicted_noise(noise, jnp.array([-2.0]), jnp.array([2.0]), result, f(1),
      ...                            f(2), 0.0, True)
      >>> bool(doubled.pending), float(doubled.predicted_value), float(doubled.linear_change)
      (True, 0.0, -2.0)
    """
    step = result.step_taken
    along = jnp.sum(multipliers * leaf_slopes)
    linear = decay_change + step * along
    predicted = value + linear
    if along_searched_line:
        moved = step > 0
        safe_step = jnp.where(moved, step, 1)
        curvature = (safe_step * slope - result.decrease - decay_change) / jnp.square(safe_step)
        mean_multiplier = -along / jnp.where(slope > 0, slope, 1)
        predicted = predicted + jnp.where(moved, curvature * jnp.square(mean_multiplier * step), 0)
    return noise._replace(
        pending=jnp.asarray(True), predicted_value=predicted, linear_change=linear
    )


class SalsaScalars(NamedTuple):
    """The small arrays of a SaLSa transform's state (:attr:`ScaleBySalsaState.scalars`).

    Attributes:
      count: steps taken (skipped non-finite and non-descent steps excluded), int32.
      learning_rate: the stored step size; the next step proposes ``increase_factor`` times it.
      avg_decrease: running average of accepted loss decreases, :math:`\\bar D`.
      avg_slope: running average of the directional slopes, :math:`\\bar S`.
      learning_rate_fast: fast moving average of accepted step sizes (decay 0.9).
      learning_rate_slow: slow moving average of accepted step sizes (decay 0.99).
      steps_since_search: steps since the last search, int32.
      step_scale: with a direction that rescales its step (:attr:`Directions.step_scale`), the
        factor of the last step that measured it (1 before the first); else ``None``.
      noise: with ``multiplier_noise``, a :class:`NoiseState`; else ``None``.
      info: :class:`SalsaInfo`.
    """

    count: jax.Array  # int32
    learning_rate: jax.Array  # float, shape ()
    avg_decrease: jax.Array  # float
    avg_slope: jax.Array  # float
    learning_rate_fast: jax.Array  # float
    learning_rate_slow: jax.Array  # float
    steps_since_search: jax.Array  # int32
    step_scale: Any
    noise: Any
    info: SalsaInfo


class ScaleBySalsaState(NamedTuple):
    """State of a SaLSa transform.

    Its scalars (:class:`SalsaScalars`: the step size, the running averages, the noise
    measurement, the diagnostics) are stored packed, one vector per dtype
    (:class:`~salsa_optax._src.packing.Packed`), so that a jitted step passes three arrays for
    them rather than one each; they read as attributes of the state all the same
    (``state.learning_rate``, ``state.info.total_searches``, ``optax.tree.get(state,
    "learning_rate")``). ``optax.tree.set`` sets the fields of :class:`SalsaScalars` and
    replaces ``info`` or ``noise`` whole; a field of those is set with ``_replace``:
    ``state._replace(scalars=state.scalars._replace(info=state.info._replace(...)))``.

    Attributes:
      scalars: :class:`SalsaScalars`, packed; each of its fields is also an attribute of the
        state.
      distance: with ``multiplier_distance`` or ``rescale_distance``, a :class:`DistanceState`
        (vectors with one entry per parameter leaf); else ``None``.
      directions: state of the direction (Adam moments for the full optimizer).
      initial_params: with ``multiplier_distance`` or ``rescale_distance``, the parameters given
        to ``init``; else ``None``.
      aux: with ``aux_like``, the auxiliary output of ``value_fn`` at the accepted trial (on a step
        without a search, the ``aux`` given to ``update``, or the previous one); else ``None``.

    Examples:
      >>> import salsa_optax
      >>> state = salsa_optax.salsa().init({"w": jnp.zeros(3)})
      >>> float(state.learning_rate), int(state.info.total_searches), len(jax.tree.leaves(state))
      (1.0, 0, 7)
    """

    scalars: Any
    distance: Any
    directions: Any
    initial_params: Any
    aux: Any

    def __getattr__(self, name: str) -> Any:
        if name in SalsaScalars._fields:
            return getattr(self.scalars, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def count(self) -> jax.Array:
        """:attr:`SalsaScalars.count` (a property: tuple's ``count`` method would shadow it)."""
        return self.scalars.count

    def unpacked(self) -> "ScaleBySalsaState":
        """The state with :attr:`scalars` as a :class:`SalsaScalars`, an array per field: to map
        over, compare or print its fields by name. (Set a field with ``optax.tree.set``.)"""
        return self._replace(scalars=self.scalars.unpacked())


class _StepInputs(NamedTuple):
    """What each branch of a SaLSa step reads from the state's scalars.

    Attributes:
      scalars: the :class:`SalsaScalars`, with this step's noise measurement.
      noisy: whether ``multiplier_noise`` finds the loss noisy (``True`` without it).
      shared: the multiplier every leaf takes (1 where the loss is not noisy).
      proposal: the step size a step proposes, the stored one grown.
      decay_rate: the weight decay's coefficient of the parameters in this step's update.
    """

    scalars: SalsaScalars
    noisy: Any
    shared: Any
    proposal: jax.Array
    decay_rate: Any


def _scalar_dtype(params: optax.Params) -> jnp.dtype:
    """Float dtype of the state's scalars: the parameters' own, at least float32."""
    leaves = jax.tree.leaves(params)
    dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    return jnp.promote_types(dtype, jnp.float32)


def _check_hyperparameters(**values: Any) -> None:
    requirements = {
        "slope_rtol": (lambda v: 0 < v < 1, "0 < slope_rtol < 1", {}),
        "smoothing": (lambda v: 0 <= v < 1, "0 <= smoothing < 1", {}),
        "decrease_factor": (lambda v: 0 < v < 1, "0 < decrease_factor < 1", {}),
        "increase_factor": (lambda v: v >= 1, "increase_factor >= 1", {}),
        "warm_start_factor": (
            lambda v: v >= 1,
            "warm_start_factor >= 1 (or None: increase_factor throughout)",
            {"optional": True},
        ),
        "growth_margin": (
            lambda v: v >= 0,
            "growth_margin >= 0 (or None: no growth by margin)",
            {"optional": True},
        ),
        "max_backtracking_steps": (
            lambda v: v >= 1,
            "max_backtracking_steps >= 1",
            {"integer": True},
        ),
        "initial_learning_rate": (lambda v: v > 0, "initial_learning_rate > 0", {}),
        "max_learning_rate": (
            lambda v: v > 0,
            "max_learning_rate > 0 (or None for no cap)",
            {"optional": True},
        ),
        "adaptive_search_frequency": (
            lambda v: v in (0, 1),
            "adaptive_search_frequency is True or False",
            {},
        ),
        "warmup_searches": (lambda v: v >= 0, "warmup_searches >= 0", {"integer": True}),
        "max_search_interval": (lambda v: v >= 1, "max_search_interval >= 1", {}),
        "weight_decay": (lambda v: v >= 0, "weight_decay >= 0", {}),
        "step_multiplier": (lambda v: v > 0, "step_multiplier > 0", {}),
        "multiplier_distance": (
            lambda v: v > 0,
            "multiplier_distance > 0 (or None: every parameter takes step_multiplier)",
            {"optional": True},
        ),
        "multiplier_noise": (
            lambda v: v > 0,
            "multiplier_noise > 0 (or None: the multiplier applies whatever the noise)",
            {"optional": True},
        ),
        "rescale_distance": (
            lambda v: v > 0,
            "rescale_distance > 0 (or None: every parameter takes the rescaled step)",
            {"optional": True},
        ),
    }
    for name, value in values.items():
        is_valid, requirement, options = requirements[name]
        check_hyperparameter(name, value, is_valid, requirement, **options)


def _zeros_like_aux(aux_like: Any) -> Any:
    return jax.tree.map(lambda s: jnp.zeros(jnp.shape(s), s.dtype), aux_like)


def _check_aux(aux: Any, aux_like: Any, name: str) -> None:
    expected = jax.tree.map(lambda s: (jnp.shape(s), jnp.dtype(s.dtype)), aux_like)
    got = jax.tree.map(lambda a: (jnp.shape(a), jnp.dtype(jnp.result_type(a))), aux)
    if jax.tree.structure(expected) != jax.tree.structure(got) or expected != got:
        raise TypeError(
            f"the aux returned by value_fn of {name} does not match aux_like: expected "
            f"(shape, dtype) {expected}, got {got}. Build aux_like with jax.eval_shape on "
            "value_fn's output."
        )


def _differs(a: jax.Array, b: jax.Array) -> jax.Array:
    """Whether two evaluations of one loss differ beyond round-off (or one is not finite)."""
    scale = jnp.maximum(jnp.abs(a), jnp.abs(b))
    return jnp.logical_not(jnp.abs(a - b) <= VALUE_MISMATCH_RTOL * scale)


def _grown_by_margin(
    step_size: jax.Array, result: armijo.SearchResult, growth_margin: Any, cap: Any
) -> jax.Array:
    r"""The step size to store after a search, grown when its first trial passed with room.

    A first trial that passed with relative margin :math:`m` (``lhs = (1 + m) rhs``) above
    ``growth_margin`` :math:`m_0` stores :math:`\eta \min(2, (1 + m) / (1 + m_0))`: the step
    size rises towards the one whose test passes with margin :math:`m_0`, at most doubling per
    search.
    """
    first_passed = (result.outcome == armijo.ACCEPTED) & (result.num_evaluations == 1)
    factor = jnp.clip((1 + result.min_margin) / (1 + growth_margin), 1.0, MAX_MARGIN_GROWTH)
    grown = jnp.minimum(step_size * factor.astype(step_size.dtype), cap)
    return jnp.where(first_passed, grown, step_size).astype(step_size.dtype)


def _per_leaf(fn: Any, *trees: Any) -> Any:
    """``fn`` of each leaf of ``trees`` (taken together), stacked into one vector per output, in
    the order of ``jax.tree.leaves``: the per-leaf quantities as one array each.

    Examples:
      >>> _per_leaf(lambda x: jnp.sum(x), {"a": jnp.ones(2), "b": jnp.ones(3)}).tolist()
      [2.0, 3.0]
    """
    leaves = list(zip(*(jax.tree.leaves(tree) for tree in trees), strict=True))
    if not leaves:
        # Parameters without leaves: per output, a vector of no entries of the type fn gives.
        outputs = jax.eval_shape(fn, *(jnp.zeros(()) for _ in trees))
        return jax.tree.map(lambda output: jnp.zeros((0,), output.dtype), outputs)
    return jax.tree.map(lambda *values: jnp.stack(values), *(fn(*leaf) for leaf in leaves))


def _radial_alignment(
    grad: optax.Updates, params: optax.Params, dtype
) -> tuple[jax.Array, jax.Array]:
    r"""Per leaf (vectors), :math:`n \cos^2(g, w)` and whether it was measured (:math:`g, w \ne 0`).

    Examples:
      >>> w = {"bias": jnp.ones(2), "kernel": jnp.array([3.0, 4.0]), "unused": jnp.ones(2)}
      >>> g = {"bias": jnp.ones(2), "kernel": jnp.array([-4.0, 3.0]), "unused": jnp.zeros(2)}
      >>> alignment, measured = _radial_alignment(g, w, jnp.float32)
      >>> alignment.tolist(), measured.tolist()
      ([2.0, 0.0, 0.0], [True, True, False])
    """

    def alignment(g, w):
        g, w = jnp.asarray(g, dtype), jnp.asarray(w, dtype)
        radial = jnp.abs(optax.tree.real(optax.tree.vdot(g, w)))
        scale = optax.tree.norm(g) * optax.tree.norm(w)
        measured = scale > 0
        cosine = radial / jnp.where(measured, scale, 1)
        return jnp.where(measured, jnp.size(w) * cosine**2, 0).astype(dtype), measured

    return _per_leaf(alignment, grad, params)


def _scale_invariant(radial_sum: jax.Array, radial_count: jax.Array) -> jax.Array:
    """Per leaf, whether its mean radial alignment is below ``SCALE_INVARIANCE_LEVEL``."""
    return (radial_count > 0) & (radial_sum < SCALE_INVARIANCE_LEVEL * radial_count)


def _relative_distances(params: optax.Params, initial_params: optax.Params, dtype) -> jax.Array:
    r"""Per leaf (a vector), :math:`\|w - w_0\| / \|w_0\|`; infinite for a leaf that started at
    zero or at a value that is not finite (a frozen mask of -inf): it counts as far from its start.

    Examples:
      >>> w0 = {"far": jnp.zeros(2), "half": jnp.ones(4), "mask": jnp.array([-jnp.inf]),
      ...       "still": jnp.ones(2)}
      >>> w = {"far": jnp.ones(2), "half": jnp.array([2.0, 1.0, 1.0, 1.0]), "mask": w0["mask"],
      ...      "still": jnp.ones(2)}
      >>> _relative_distances(w, w0, jnp.float32).tolist()
      [inf, 0.5, inf, 0.0]
    """
    moved = _per_leaf(
        lambda w, w0: optax.tree.norm(jnp.asarray(w, dtype) - jnp.asarray(w0, dtype)),
        params,
        initial_params,
    )
    start = _per_leaf(lambda w0: optax.tree.norm(jnp.asarray(w0, dtype)), initial_params)
    measurable = (start > 0) & jnp.isfinite(start)
    return jnp.where(measurable, moved / jnp.where(measurable, start, 1), jnp.inf)


def _leaf_factors(factor: jax.Array, exponents: jax.Array) -> jax.Array:
    """Per leaf, ``factor ** exponent``; exactly ``factor`` where the exponent is 1.

    Examples:
      >>> _leaf_factors(jnp.asarray(4.0), jnp.array([0.0, 0.5, 1.0])).tolist()
      [1.0, 2.0, 4.0]
    """
    return jnp.where(exponents >= 1, factor, factor**exponents)


def _distance_multipliers(
    relative_distances: jax.Array,
    scale_invariant: jax.Array,
    step_multiplier: Any,
    distance: Any,
    dtype,
) -> jax.Array:
    r"""Per leaf (a vector), :math:`1 + (\mu - 1) \min(1, r / \delta)` of its relative distance
    :math:`r` from its start; all 1 when any leaf is scale-invariant.

    Examples:
      >>> relative = jnp.array([jnp.inf, 0.5, 0.0])
      >>> invariant = jnp.array([False, False, False])
      >>> _distance_multipliers(relative, invariant, 2.0, 1.0, jnp.float32).tolist()
      [2.0, 1.5, 1.0]
      >>> _distance_multipliers(relative, invariant.at[2].set(True), 2.0, 1.0, jnp.float32).tolist()
      [1.0, 1.0, 1.0]
    """
    grown = 1 + (step_multiplier - 1) * jnp.minimum(relative_distances / distance, 1)
    return jnp.where(jnp.any(scale_invariant), 1, grown).astype(dtype)


def search_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """The search hyper-parameters (and ``aux_like``) among a factory's arguments, ``locals()``.

    Examples:
      >>> search_arguments({"slope_rtol": 0.3, "b1": 0.9, "aux_like": None})
      {'slope_rtol': 0.3, 'aux_like': None}
    """
    names = (*SearchDefaults._fields, "aux_like")
    return {name: value for name, value in arguments.items() if name in names}


def salsa_transformation(
    directions: Directions,
    *,
    name: str,
    slope_rtol: Any,
    smoothing: Any,
    decrease_factor: Any,
    increase_factor: Any,
    max_backtracking_steps: Any,
    initial_learning_rate: Any,
    max_learning_rate: Any,
    adaptive_search_frequency: Any,
    warmup_searches: Any,
    max_search_interval: Any,
    warm_start_factor: Any = None,
    growth_margin: Any = None,
    weight_decay: Any = 0.0,
    step_multiplier: Any = 1.0,
    multiplier_distance: Any = None,
    multiplier_noise: Any = None,
    rescale_distance: Any = None,
    rescale_each_step: bool = False,
    searched_step_along_step_direction: bool = False,
    reference_bypass: bool = False,
    aux_like: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The one SaLSa implementation behind every public transform and alias.

    Args:
      directions: how the incoming updates become the search and step directions.
      name: the public name, for error messages.
      weight_decay: decoupled weight decay, scaled by the stored step size; trial points start
        from the decayed parameters.
      step_multiplier: every step moves this many times the step size the search accepted (or,
        on a skipped step, proposed); the search and the stored step size do not see it.
      multiplier_distance: ``None``, or :math:`\delta`: a parameter leaf takes the multiplier
        only as far as it has moved from its initial value, :math:`1 + (\mu - 1) \min(1, \|w -
        w_0\| / (\delta \|w_0\|))`, measured at each search, and no leaf does while any leaf
        is scale-invariant (its gradient orthogonal to it at every search: BatchNorm); the state
        keeps the initial parameters.
      multiplier_noise: ``None``, or :math:`\nu`: the multiplier applies only while the loss is
        noisy, while the root mean square of the residual of :class:`NoiseState` exceeds
        :math:`\nu` times that of the linear change; else every step takes the search's.
      rescale_distance: ``None``, or :math:`\delta_\rho`: with a direction that rescales its
        step (:attr:`Directions.step_scale`, factor :math:`s`), a parameter leaf takes
        :math:`s^{\min(1, \|w - w_0\| / (\delta_\rho \|w_0\|))}`, measured at each search: a leaf
        near its start takes the unrescaled step, one that has left it the rescaled step.
      rescale_each_step: with a direction that rescales its step, measure the factor :math:`s`
        on every step (static). Else a skipped step measures it only where ``multiplier_noise``
        has measured the loss and found it not noisy (or without ``multiplier_noise``), and
        otherwise takes the factor the last search measured: measuring takes two passes over
        the parameters with a division and a square root per entry, about an Adam step's work.
      searched_step_along_step_direction: a searched step moves along the step direction with the
        accepted step size instead of to the accepted trial point (static).
      reference_bypass: skip the search when the loss or the smoothed slope is below 1e-8, as
        the authors' optimizer does (static).
      aux_like: the structure of ``value_fn``'s aux output, to keep the accepted trial's in the
        state (static).
      **others: see :func:`scale_by_salsa`.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs`.
    """
    _check_hyperparameters(
        slope_rtol=slope_rtol,
        smoothing=smoothing,
        decrease_factor=decrease_factor,
        increase_factor=increase_factor,
        warm_start_factor=warm_start_factor,
        growth_margin=growth_margin,
        max_backtracking_steps=max_backtracking_steps,
        initial_learning_rate=initial_learning_rate,
        max_learning_rate=max_learning_rate,
        adaptive_search_frequency=adaptive_search_frequency,
        warmup_searches=warmup_searches,
        max_search_interval=max_search_interval,
        weight_decay=weight_decay,
        step_multiplier=step_multiplier,
        multiplier_distance=multiplier_distance,
        multiplier_noise=multiplier_noise,
        rescale_distance=rescale_distance,
    )
    armijo_config = armijo.ArmijoConfig(
        slope_rtol=slope_rtol,
        smoothing=smoothing,
        decrease_factor=decrease_factor,
        max_backtracking_steps=max_backtracking_steps,
        reference_bypass=reference_bypass,
    )
    schedule_config = search_frequency.ScheduleConfig(
        adaptive=adaptive_search_frequency,
        warmup_searches=warmup_searches,
        max_search_interval=max_search_interval,
    )
    cap = jnp.inf if max_learning_rate is None else max_learning_rate
    no_weight_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0
    # With multiplier_distance each leaf's update carries its own multiplier; else all share it.
    per_leaf = multiplier_distance is not None
    shared_multiplier = 1.0 if per_leaf else step_multiplier
    # With rescale_distance each leaf's step direction carries its own share of the rescaling.
    per_leaf_rescaling = rescale_distance is not None and directions.step_scale is not None
    tracks_distance = per_leaf or per_leaf_rescaling
    rescales = directions.step_scale is not None

    def init_fn(params: optax.Params) -> ScaleBySalsaState:
        dtype = _scalar_dtype(params)
        zero = lambda: jnp.zeros((), dtype)
        count = lambda: jnp.zeros((), jnp.int32)
        num_leaves = len(jax.tree.leaves(params))
        scalars = SalsaScalars(
            count=count(),
            learning_rate=jnp.asarray(initial_learning_rate, dtype),
            avg_decrease=zero(),
            avg_slope=zero(),
            learning_rate_fast=jnp.asarray(search_frequency.INITIAL_AVERAGE, dtype),
            learning_rate_slow=jnp.asarray(search_frequency.INITIAL_AVERAGE, dtype),
            steps_since_search=count(),
            step_scale=jnp.ones((), dtype) if rescales else None,
            noise=None
            if multiplier_noise is None
            else NoiseState(jnp.asarray(False), zero(), zero(), zero(), zero()),
            info=SalsaInfo(
                searched=jnp.asarray(False),
                search_outcome=count(),
                num_evaluations=count(),
                num_backtracks=count(),
                step_size=zero(),
                armijo_margin=jnp.asarray(jnp.inf, dtype),
                total_searches=count(),
                total_evaluations=count(),
                total_backtracks=count(),
                total_exhausted=count(),
                total_nonfinite_skipped=count(),
                total_nondescent_skipped=count(),
                total_value_mismatches=count(),
            ),
        )
        return ScaleBySalsaState(
            scalars=Packed.of(scalars),
            distance=None
            if not tracks_distance
            else DistanceState.of(
                radial_sum=jnp.zeros(num_leaves, dtype),
                radial_count=jnp.zeros(num_leaves, dtype),
                multipliers=jnp.ones(num_leaves, dtype),
                rescale_exponents=jnp.zeros(num_leaves, dtype) if per_leaf_rescaling else None,
            ),
            directions=directions.init(params),
            # A fresh buffer: a state whose leaves share one buffer cannot be donated.
            initial_params=jax.tree.map(jnp.array, params) if tracks_distance else None,
            aux=None if aux_like is None else _zeros_like_aux(aux_like),
        )

    def update_fn(
        updates: optax.Updates,
        state: ScaleBySalsaState,
        params: optax.Params | None = None,
        *,
        value: jax.Array | None = None,
        grad: optax.Updates | None = None,
        value_fn: Any = None,
        aux: Any = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ScaleBySalsaState]:
        check_line_search_args(name, params, value, grad, value_fn, updates)
        fn_kwargs = value_fn_kwargs(value_fn, extra_args)

        def loss_and_aux(p):
            loss, trial_aux = split_loss_and_aux(
                value_fn(p, **fn_kwargs), name, aux_like is not None
            )
            if aux_like is None:
                return loss, None
            _check_aux(trial_aux, aux_like, name)
            return loss, trial_aux

        layout = state.scalars._layout
        dtype = state.scalars.learning_rate.dtype
        value = jnp.asarray(value).astype(dtype)
        finite = all_finite((value, grad, updates))
        count = state.scalars.count
        directions_state = directions.accumulate(updates, state.directions, count)
        current_aux = state.aux
        if aux_like is not None and aux is not None:
            _check_aux(aux, aux_like, name)
            current_aux = aux
        distance = state.distance

        def step_inputs(scalar_vectors, step_is_finite):
            # The state's scalars, unpacked where they are read: each branch below takes the
            # packed vectors and unpacks them itself, since a scalar unpacked outside and read
            # inside a loop or a conditional would be an operand of it, a kernel and a buffer of
            # its own.
            s = Packed(scalar_vectors, layout).unpacked()
            growth = increase_factor
            if warm_start_factor is not None:
                # Until a search first rejects a trial, the step size grows from its small start.
                warming = s.info.total_backtracks == 0
                growth = jnp.where(warming, warm_start_factor, increase_factor)
            noise, noisy = s.noise, True
            if noise is not None:
                noise = _measure_noise(noise, value, jnp.asarray(step_is_finite))
                noisy = _noisy(noise, multiplier_noise)
            return _StepInputs(
                scalars=s._replace(noise=noise),
                noisy=noisy,
                shared=shared_multiplier
                if noise is None
                else jnp.where(noisy, shared_multiplier, 1.0),
                proposal=jnp.minimum(s.learning_rate * growth, cap),
                decay_rate=0.0 if no_weight_decay else -weight_decay * s.learning_rate,
            )

        def gated(multipliers, noisy):
            # Each leaf's multiplier, or 1 where multiplier_noise finds the loss not noisy.
            if multiplier_noise is None:
                return multipliers
            return jnp.where(noisy, multipliers, 1).astype(multipliers.dtype)

        def largest_multiplier(distance_state, inputs):
            # What info.step_size reports: the step of the leaf with the largest multiplier.
            if not per_leaf:
                return inputs.shared
            multipliers = gated(distance_state.multipliers, inputs.noisy)
            # Parameters without leaves move by the step size alone.
            return jnp.max(multipliers) if multipliers.size else jnp.ones((), multipliers.dtype)

        # The branches below return scalars only: the parameter-sized update is formed once,
        # outside, where XLA fuses it with the direction's own element-wise work.
        def search(vectors):
            inputs = step_inputs(vectors, True)
            s, totals = inputs.scalars, inputs.scalars.info
            # The directions again, from the step's inputs: what a branch reads is materialised
            # before the loop that runs it on every step, and a skipped step would pay for
            # writing them.
            search_direction, step_direction, _ = directions.update(
                updates, state.directions, s.count
            )
            start = (
                params
                if no_weight_decay
                else optax.tree.add_scale(params, inputs.decay_rate, params)
            )
            # Per leaf <g, d> of the search direction: the slope, and the noise model's.
            search_slopes = _per_leaf(
                lambda g, d: optax.tree.real(optax.tree.vdot(g, d)).astype(dtype),
                grad,
                search_direction,
            )
            slope = -jnp.sum(search_slopes)
            descent = jnp.isfinite(slope) & (slope > 0)
            avg_slope = smoothing * s.avg_slope + (1 - smoothing) * slope

            def loss_at(step_size):
                trial = optax.tree.add_scale(start, step_size, search_direction)
                return loss_and_aux(optax.tree.cast_like(trial, params))

            result = armijo.backtracking_search(
                loss_at,
                value,
                s.avg_decrease,
                avg_slope,
                s.learning_rate,
                inputs.proposal,
                armijo_config,
                descent=descent,
                aux=current_aux,
            )
            exhausted = result.outcome == armijo.EXHAUSTED
            # After an exhausted search, one more evaluation tells a value_fn that disagrees with
            # `value` from a direction the search could not improve.
            mismatch = jax.lax.cond(
                exhausted,
                lambda: _differs(loss_and_aux(params)[0].astype(dtype), value),
                lambda: jnp.asarray(False),
            )
            # An exhausted search keeps the stored step size, so that one bad batch does not
            # collapse it, unless no search has accepted a trial yet: the stored step size is
            # then the initial guess, never accepted. It then stores the step size below its
            # last trial, as the authors' optimizer always does, and the next search goes on
            # down from there; not when value_fn disagrees with value (the search failed on
            # value_fn, not on the step size). After a first acceptance, exhausted searches keep
            # it: at a minimum, where round-off rejects every trial, it would shrink to zero.
            untested = totals.total_searches == (
                totals.total_exhausted + totals.total_nondescent_skipped
            )
            step_size = jnp.where(
                exhausted & untested & ~mismatch, result.end_step_size, result.step_size
            ).astype(result.step_size.dtype)
            if growth_margin is not None:
                step_size = _grown_by_margin(step_size, result, growth_margin, cap)
            fast, slow = search_frequency.update_averages(
                s.learning_rate_fast, s.learning_rate_slow, step_size
            )
            taken = result.step_taken * inputs.shared
            new_distance = distance
            if tracks_distance:
                relative = _relative_distances(params, state.initial_params, dtype)
            if per_leaf:
                alignment, measured = _radial_alignment(grad, params, dtype)
                radial_sum = distance.radial_sum + alignment
                radial_count = distance.radial_count + measured.astype(dtype)
                new_distance = new_distance.with_rows(
                    radial_sum=radial_sum,
                    radial_count=radial_count,
                    multipliers=_distance_multipliers(
                        relative,
                        _scale_invariant(radial_sum, radial_count),
                        step_multiplier,
                        multiplier_distance,
                        dtype,
                    ),
                )
            if per_leaf_rescaling:
                new_distance = new_distance.with_rows(
                    rescale_exponents=jnp.minimum(relative / rescale_distance, 1).astype(dtype)
                )
            measured_scale = None
            if rescales:
                measured_scale = directions.step_scale(search_direction, step_direction)
            new_noise = s.noise
            if new_noise is not None:
                leaf_slopes = search_slopes
                if searched_step_along_step_direction:
                    scale = 1.0
                    if rescales:
                        scale = measured_scale
                        if per_leaf_rescaling:
                            scale = _leaf_factors(scale, new_distance.rescale_exponents)
                    leaf_slopes = scale * _per_leaf(
                        lambda g, d: optax.tree.real(optax.tree.vdot(g, d)).astype(dtype),
                        grad,
                        step_direction,
                    )
                new_noise = _predicted_noise(
                    new_noise,
                    leaf_slopes,
                    gated(new_distance.multipliers, inputs.noisy) if per_leaf else inputs.shared,
                    result,
                    value,
                    slope,
                    0.0
                    if no_weight_decay
                    else inputs.decay_rate * optax.tree.real(optax.tree.vdot(grad, params)),
                    not searched_step_along_step_direction,
                )
            accepted = (result.outcome == armijo.ACCEPTED) | (
                result.outcome == armijo.ZERO_DECREASE
            )
            num_evaluations = result.num_evaluations + exhausted.astype(jnp.int32)
            num_backtracks = result.num_evaluations - accepted.astype(jnp.int32)
            info = totals._replace(
                searched=jnp.asarray(True),
                search_outcome=result.outcome,
                num_evaluations=num_evaluations,
                num_backtracks=num_backtracks,
                step_size=result.step_taken * largest_multiplier(new_distance, inputs),
                armijo_margin=result.min_margin,
                total_searches=totals.total_searches + 1,
                total_evaluations=totals.total_evaluations + num_evaluations,
                total_backtracks=totals.total_backtracks + num_backtracks,
                total_exhausted=totals.total_exhausted + exhausted,
                total_nondescent_skipped=totals.total_nondescent_skipped
                + (result.outcome == armijo.NON_DESCENT),
                total_value_mismatches=totals.total_value_mismatches + mismatch,
            )
            new_scalars = s._replace(
                count=optax.safe_increment(s.count),
                learning_rate=step_size,
                avg_decrease=result.avg_decrease,
                avg_slope=avg_slope,
                learning_rate_fast=fast,
                learning_rate_slow=slow,
                steps_since_search=jnp.zeros_like(s.steps_since_search),
                step_scale=measured_scale,
                noise=new_noise,
                info=info,
            )
            none = jnp.zeros_like(taken)
            # (search coefficient, step coefficient) of the update formed outside the branches.
            coefficients = (none, taken) if searched_step_along_step_direction else (taken, none)
            # A direction that is not a descent direction leaves all but the diagnostics.
            moves = result.outcome != armijo.NON_DESCENT
            new_scalars, new_distance, new_aux = jax.tree.map(
                lambda new, old: jnp.where(moves, new, old),
                (new_scalars, new_distance, result.aux),
                (s._replace(info=info), distance, state.aux),
            )
            return new_scalars, new_distance, new_aux, coefficients, moves

        def skip(vectors):
            inputs = step_inputs(vectors, True)
            s, totals = inputs.scalars, inputs.scalars.info
            step = inputs.proposal * inputs.shared
            new_scalars = s._replace(
                count=optax.safe_increment(s.count),
                steps_since_search=s.steps_since_search + 1,
                info=totals._replace(
                    searched=jnp.asarray(False),
                    search_outcome=jnp.asarray(armijo.SKIPPED, jnp.int32),
                    num_evaluations=jnp.zeros_like(totals.num_evaluations),
                    num_backtracks=jnp.zeros_like(totals.num_backtracks),
                    step_size=inputs.proposal * largest_multiplier(distance, inputs),
                    armijo_margin=jnp.full_like(totals.armijo_margin, jnp.inf),
                ),
            )
            return new_scalars, distance, current_aux, (jnp.zeros_like(step), step), True

        def skip_and_measure(vectors):
            # A skipped step that measures the rescaling of its own directions, formed here as
            # in the search branch.
            new_scalars, *others = skip(vectors)
            search_direction, step_direction, _ = directions.update(
                updates, state.directions, count
            )
            factor = directions.step_scale(search_direction, step_direction)
            return new_scalars._replace(step_scale=factor), *others

        def not_finite(vectors):
            # A non-finite value, gradient or update leaves all but the diagnostics.
            s = step_inputs(vectors, False).scalars
            info = s.info._replace(
                searched=jnp.asarray(False),
                search_outcome=jnp.asarray(armijo.NON_FINITE, jnp.int32),
                num_evaluations=jnp.zeros_like(s.info.num_evaluations),
                num_backtracks=jnp.zeros_like(s.info.num_backtracks),
                step_size=jnp.zeros_like(s.info.step_size),
                armijo_margin=jnp.full_like(s.info.armijo_margin, jnp.inf),
                total_nonfinite_skipped=s.info.total_nonfinite_skipped + 1,
            )
            none = jnp.zeros((), dtype)
            return s._replace(info=info), distance, state.aux, (none, none), False

        num_leaves = len(jax.tree.leaves(params))

        def leaf_coefficients(search_coef, step_coef, new_scalars, new_distance):
            # Each leaf's coefficients of the search and step directions: the branch's, times
            # the rescaling factor it measured or kept (on the step direction) and the leaf's
            # multiplier, gated by the noise this step measured (whose running means the new
            # state holds; a step that does not move has no coefficients to gate).
            search_coefs = jnp.full(num_leaves, search_coef, dtype)
            step_coefs = jnp.full(num_leaves, step_coef, dtype)
            if rescales:
                factor = new_scalars.step_scale
                if per_leaf_rescaling:
                    factor = _leaf_factors(factor, new_distance.rescale_exponents)
                step_coefs = step_coefs * factor
            if per_leaf:
                noisy = (
                    True
                    if new_scalars.noise is None
                    else _noisy(new_scalars.noise, multiplier_noise)
                )
                multipliers = gated(new_distance.multipliers, noisy)
                search_coefs, step_coefs = search_coefs * multipliers, step_coefs * multipliers
            return search_coefs, step_coefs

        def typed(branch):
            # What the branches return must have identical types (they are selected, and are a
            # loop's carry), whatever the hyper-parameters (given as arrays by inject_hyperparams)
            # promote to; packed, one vector per dtype: the scalars' vectors are those the new
            # state stores.
            def packed(vectors):
                new_scalars, new_distance, new_aux, coefficients, moves = branch(vectors)
                new_scalars = optax.tree.cast_like(new_scalars, unpacked_scalars)
                new_distance = optax.tree.cast_like(new_distance, distance)
                coefficients = leaf_coefficients(*coefficients, new_scalars, new_distance)
                return (
                    tuple(Packed.of(new_scalars)),
                    optax.tree.cast_like(new_aux, state.aux),
                    pack((new_distance, coefficients, jnp.asarray(moves))),
                )

            return packed

        # Whether this step searches or measures the rescaling, from the scalars unpacked here
        # for that alone (and for the weight decay below): XLA fuses what reads them into the
        # few kernels that compute it.
        current = step_inputs(tuple(state.scalars), True)
        unpacked_scalars = current.scalars
        searching = search_frequency.should_search(
            unpacked_scalars.count,
            unpacked_scalars.steps_since_search,
            unpacked_scalars.learning_rate_fast,
            unpacked_scalars.learning_rate_slow,
            schedule_config,
        ) | (unpacked_scalars.info.search_outcome == armijo.EXHAUSTED)
        # After a search whose every trial was rejected, the step size it kept has just failed
        # the test (trials start at or above it): the next step searches again rather than take
        # it untested, as the schedule would once its averages settle.
        measures = False
        if rescales and (rescale_each_step or multiplier_noise is None):
            measures = True
        elif rescales:
            # While the loss is noisy the factor changes little between searches; on a loss
            # measured deterministic the factor kept from a search stalls a converging run.
            measures = (unpacked_scalars.noise.linear_sq > 0) & ~current.noisy
        # A step that skips the search, or whose inputs are not finite, updates scalars alone:
        # both are computed on every step and one is selected. A search, or a skipped step that
        # measures the rescaling, reads the parameters and runs only on the steps that take it.
        operand = tuple(state.scalars)
        plain = jax.tree.map(
            lambda skipped, not_finite: jnp.where(finite, skipped, not_finite),
            typed(skip)(operand),
            typed(not_finite)(operand),
        )
        expensive = [typed(search)] + ([typed(skip_and_measure)] if rescales else [])
        vectors, new_aux, step_vectors = at_most_once(
            finite & (searching | measures),
            lambda: jax.lax.switch(jnp.where(searching, 0, 1), expensive, operand),
            plain,
        )
        leaf_vector = jnp.zeros(num_leaves, dtype)
        new_distance, (search_coefs, step_coefs), moves = unpack(
            step_vectors, (distance, (leaf_vector, leaf_vector), jnp.asarray(True))
        )
        new_directions = jax.tree.map(
            lambda new, old: jnp.where(moves, new, old).astype(old.dtype),
            directions_state,
            state.directions,
        )
        # From the state returned (equal to the accumulated one wherever the step moves): the
        # moments are then read once, after they are written, as in optax.adam.
        treedef = jax.tree.structure(params)
        steps = directions.combine(
            updates,
            new_directions,
            count,
            treedef.unflatten(list(search_coefs)),
            treedef.unflatten(list(step_coefs)),
        )

        def guarded(p, step):
            update = step if no_weight_decay else step + current.decay_rate * p
            return jnp.where(moves, update, 0).astype(p.dtype)

        new_updates = jax.tree.map(guarded, params, steps)
        new_state = state._replace(
            scalars=Packed(vectors, layout),
            distance=new_distance,
            directions=new_directions,
            aux=new_aux,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_salsa(
    slope_rtol: Any = DEFAULTS.slope_rtol,
    smoothing: Any = DEFAULTS.smoothing,
    decrease_factor: Any = DEFAULTS.decrease_factor,
    increase_factor: Any = DEFAULTS.increase_factor,
    warm_start_factor: Any = DEFAULTS.warm_start_factor,
    growth_margin: Any = DEFAULTS.growth_margin,
    max_backtracking_steps: Any = DEFAULTS.max_backtracking_steps,
    initial_learning_rate: Any = DEFAULTS.initial_learning_rate,
    max_learning_rate: Any = DEFAULTS.max_learning_rate,
    adaptive_search_frequency: Any = DEFAULTS.adaptive_search_frequency,
    warmup_searches: Any = DEFAULTS.warmup_searches,
    max_search_interval: Any = DEFAULTS.max_search_interval,
    aux_like: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales the incoming updates by a step size found by SaLSa's smoothed Armijo line search.

  The incoming updates :math:`d` are a descent direction in update form, as for optax's own line
  searches: chain the search after a full optimizer with learning rate 1,
  ``optax.chain(optax.sgd(1.0), scale_by_salsa())`` or
  ``optax.chain(optax.adam(1.0), scale_by_salsa())``. The output is :math:`\eta d`.

  Both sides of the stochastic Armijo test are smoothed across steps with one factor
  :math:`\beta_3` (``smoothing``), keeping running averages of the slope :math:`\bar S` and of
  the accepted loss decrease :math:`\bar D`:

  .. math::
    \bar S &\leftarrow \beta_3 \bar S + (1-\beta_3)\,(-\langle g, d\rangle) \\
    \text{accept } \eta \text{ when } &\beta_3 \bar D + (1-\beta_3)\,(f(w) - f(w + \eta d))
      \ \ge\ c\,\eta\,\bar S

  starting from :math:`\eta = \min(\gamma\,\eta_{\text{prev}}, \eta_{\max})` and shrinking it by
  ``decrease_factor`` on rejection. With ``adaptive_search_frequency`` the search runs only as
  often as the step size still moves (every :math:`L = \min(L_{\max}, 1/(r - 1))` steps, ``r``
  the ratio of a fast to a slow average of accepted step sizes); other steps take
  :math:`\gamma\,\eta_{\text{prev}}\,d` without evaluating the loss.

  Whatever the loss's offset or sign, the test compares decreases. Guards: a search whose
  direction is not a descent direction (:math:`\langle g, d\rangle \ge 0`) takes no step and
  keeps the state; a search whose every trial is rejected takes no step and keeps the stored step
  size (and checks that ``value_fn`` agrees with ``value``), and the next step searches again
  whatever the schedule, since that step size has just failed the test; before any search has
  accepted a trial it stores the step size below its last trial instead, so that the next
  search goes on down from an initial step size that was too large (unless ``value_fn``
  disagrees with ``value``); a step whose ``value``, ``grad`` or updates are not finite takes no
  step and keeps the state. ``state.info`` counts each.

  Args:
    slope_rtol: :math:`c`, the fraction of the linear decrease the step must achieve.
    smoothing: :math:`\beta_3`; 0 gives the classic stochastic Armijo test.
    decrease_factor: factor shrinking a rejected step size.
    increase_factor: :math:`\gamma`, factor growing the stored step size at each step (1:
      never; the authors' published optimizer uses 1.1).
    warm_start_factor: until a search first rejects a trial, the stored step size grows by this
      factor at each step instead of ``increase_factor``: with a small ``initial_learning_rate``
      the step size climbs from below to the edge of acceptance (``None``: no such phase).
    growth_margin: :math:`m_0`: after a search whose first trial passed with relative Armijo
      margin :math:`m > m_0` (``lhs = (1 + m) rhs``), store :math:`\eta \min(2, (1+m)/(1+m_0))`,
      so the step size can rise again towards the one that passes with margin :math:`m_0`
      (``None``: no such growth).
    max_backtracking_steps: at most this many trial points per search.
    initial_learning_rate: the stored step size before the first step.
    max_learning_rate: cap on the proposed step size (``None``: no cap).
    adaptive_search_frequency: search only as often as the step size moves; ``False`` searches
      on every step.
    warmup_searches: the first steps always search.
    max_search_interval: :math:`L_{\max}`, the longest gap between searches.
    aux_like: ``None``, or the structure of the aux output when ``value_fn`` returns
      ``(loss, aux)`` (e.g. ``jax.eval_shape(lambda: loss_fn(params, batch))[1]``): the
      accepted trial's aux is then kept in ``state.aux``. Without it, an aux output is accepted
      and ignored.

  Returns:
    A :class:`optax.GradientTransformationExtraArgs` whose ``update`` takes the keyword arguments
    ``value`` (the loss at ``params``), ``grad`` (its gradient), ``value_fn`` (``value_fn(params,
    **extra_args)`` returns the loss on the same batch, or ``(loss, aux)``), optionally ``aux``
    (the aux at ``params``, kept on steps without a search) and the extra arguments of
    ``value_fn``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, salsa_optax
    >>> def loss_fn(params, x, y):
    ...   return jnp.mean((x @ params - y) ** 2)
    >>> x = jax.random.normal(jax.random.key(0), (32, 3))
    >>> y = x @ jnp.array([1.0, -2.0, 0.5])
    >>> params = jnp.zeros(3)
    >>> tx = optax.chain(optax.sgd(learning_rate=1.0), salsa_optax.scale_by_salsa())
    >>> state = tx.init(params)
    >>> @jax.jit
    ... def train_step(params, state):
    ...   value, grad = jax.value_and_grad(loss_fn)(params, x, y)
    ...   updates, state = tx.update(grad, state, params, value=value, grad=grad,
    ...                              value_fn=loss_fn, x=x, y=y)
    ...   return optax.apply_updates(params, updates), state
    >>> for _ in range(100):
    ...   params, state = train_step(params, state)
    >>> bool(loss_fn(params, x, y) < 1e-3)
    True
    >>> float(optax.tree.get(state, "learning_rate")) > 0
    True

  References:
    Kenneweg, Kenneweg, Fumagalli, Hammer, `No learning rates needed: Introducing SALSA - Stable
    Armijo Line Search Adaptation <https://arxiv.org/abs/2407.20650>`_, IJCNN 2024.

    Vaswani et al., `Painless Stochastic Gradient <https://arxiv.org/abs/1905.09997>`_, 2019.
  """
    return salsa_transformation(
        incoming_direction(), name="scale_by_salsa", **search_arguments(locals())
    )
