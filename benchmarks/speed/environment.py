"""The process set-up (threads, pinned core) and the description of the machine."""

import datetime
import os
import pathlib
import platform
from typing import Any

import jax
import optax

import salsa_optax
from benchmarks import provenance

THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def configure_threads(pin: str, cpu: int | None, with_torch: bool) -> dict[str, Any]:
    """One compute thread for XLA (and torch), the process pinned to one core; before any jax op.

    ``pin="auto"`` pins unless an NVIDIA GPU is there (its runtime wants its own threads).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {THREAD_FLAGS}".strip()
    gpu = pathlib.Path("/dev/nvidiactl").exists() and os.environ.get("JAX_PLATFORMS") != "cpu"
    pinned = None
    if pin == "yes" or (pin == "auto" and not gpu):
        pinned = max(os.sched_getaffinity(0)) if cpu is None else cpu
        os.sched_setaffinity(0, {pinned})
    threads = {"xla_flags": os.environ["XLA_FLAGS"], "pinned_cpu": pinned}
    if with_torch:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        threads.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads())
    return threads


def torch_unavailable() -> str | None:
    """Why the PyTorch comparison cannot run, or None when it can."""
    try:
        import torch  # noqa: F401
        from salsa.SaLSA import SaLSA  # noqa: F401
    except ImportError as error:
        return f"{error}; install the compare extra: pip install -e '.[compare]'"
    return None


def environment() -> dict[str, Any]:
    device = jax.devices()[0]
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "jax": jax.__version__,
            "optax": optax.__version__,
            "flax": package_version("flax"),
            "salsa_optax": salsa_optax.__version__,
        },
        "git_commit": provenance.git_description(),
        "load_average_before": os.getloadavg(),
    }
    return info


def package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
