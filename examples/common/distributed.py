"""Joining the processes of a multi-host run (JAX's multi-controller runtime, ``jax.distributed``).

Every host (or every GPU) runs the same trainer command; :func:`initialize` connects the processes
before any JAX computation, after which ``jax.devices()`` lists the devices of all of them. It
uses the coordinator address, process count and process id of the flags where they are given,
and otherwise lets JAX read them from the cluster launcher's environment (SLURM ``srun``, Open
MPI ``mpirun``, a TPU slice, or ``JAX_COORDINATOR_ADDRESS`` and friends). Without either there
is one process, and nothing to join.

>>> parser = argparse.ArgumentParser()
>>> add_flags(parser)
>>> args = parser.parse_args(["--coordinator_address=10.0.0.1:1234", "--num_processes=2",
...                           "--process_id=1"])
>>> args.coordinator_address, args.num_processes, args.process_id, args.distributed
('10.0.0.1:1234', 2, 1, False)
>>> initialize(parser.parse_args([]))  # one process: nothing to join
False
>>> is_primary()
True
"""

import argparse
import os

import jax


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of :func:`initialize` to a trainer's command line."""
    group = parser.add_argument_group(
        "multi-process runs", "one process per host, all with the same command and --workdir"
    )
    group.add_argument("--coordinator_address", help="host:port of process 0, the same for all")
    group.add_argument("--num_processes", type=int, help="how many processes take part")
    group.add_argument("--process_id", type=int, help="this process's index, 0 to n-1")
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join the others even if the environment shows no launcher JAX knows (e.g. on "
        "the hosts of a Cloud TPU slice, which JAX finds through the metadata server)",
    )


def initialize(args: argparse.Namespace) -> bool:
    """Calls ``jax.distributed.initialize`` if the flags or the environment ask for it.

    Returns:
      Whether this process joined a multi-process run.
    """
    given = (args.coordinator_address, args.num_processes, args.process_id)
    if all(value is None for value in given) and not (args.distributed or _launcher_present()):
        return False
    jax.distributed.initialize(*given)
    return True


def _launcher_present() -> bool:
    """Whether a launcher that ``jax.distributed.initialize()`` recognises started several of us."""
    env = os.environ
    return (
        "JAX_COORDINATOR_ADDRESS" in env
        or ("SLURM_STEP_NODELIST" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1)
        or "OMPI_MCA_orte_hnp_uri" in env
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    )


def is_primary() -> bool:
    """Whether this is process 0, the one that writes logs, metrics and plots."""
    return jax.process_index() == 0
