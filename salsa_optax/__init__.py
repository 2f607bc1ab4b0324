"""salsa_optax: learning-rate-free training for JAX with SaLSa line searches."""

from salsa_optax._src.alias import (
    PAPER_VALUES,
    PUBLISHED_DEFAULTS,
    salsa,
    salsa_paper,
    salsa_published,
    salsa_sgd,
    sls,
)
from salsa_optax._src.defaults import SEARCH_DEFAULTS, SearchDefaults
from salsa_optax._src.directions import AdamDirectionsState
from salsa_optax._src.eg_step_size import (
    EGStepSizeInfo,
    ScaleByEGStepSizeState,
    egdd,
    scale_by_eg_step_size,
)
from salsa_optax._src.layerwise_curvature import (
    LayerwiseCurvatureInfo,
    ScaleByLayerwiseCurvatureState,
    layerwise_curvature_adamw,
    layerwise_curvature_sgd,
    scale_by_layerwise_curvature,
)
from salsa_optax._src.schedules import (
    GradNormInfo,
    RecordGradNormState,
    linear_decay_schedule,
    record_grad_norm,
    refine_schedule,
    refined_schedule,
)
from salsa_optax._src.transform import (
    DistanceState,
    SalsaInfo,
    SalsaScalars,
    ScaleBySalsaState,
    scale_by_salsa,
)

__version__ = "0.5.0"

__all__ = [
    "PAPER_VALUES",
    "PUBLISHED_DEFAULTS",
    "SEARCH_DEFAULTS",
    "AdamDirectionsState",
    "DistanceState",
    "EGStepSizeInfo",
    "GradNormInfo",
    "LayerwiseCurvatureInfo",
    "RecordGradNormState",
    "SalsaInfo",
    "SalsaScalars",
    "ScaleByEGStepSizeState",
    "ScaleByLayerwiseCurvatureState",
    "ScaleBySalsaState",
    "SearchDefaults",
    "egdd",
    "layerwise_curvature_adamw",
    "layerwise_curvature_sgd",
    "linear_decay_schedule",
    "record_grad_norm",
    "refine_schedule",
    "refined_schedule",
    "salsa",
    "salsa_paper",
    "salsa_published",
    "salsa_sgd",
    "scale_by_eg_step_size",
    "scale_by_layerwise_curvature",
    "scale_by_salsa",
    "sls",
]
