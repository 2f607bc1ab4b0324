"""SIGTERM and Ctrl-C turned into a request to save a checkpoint and stop.

Inside :class:`StopRequest` the first SIGTERM or SIGINT only sets :attr:`StopRequest.requested`;
the training loop asks :meth:`StopRequest.agreed` after each step, saves a final checkpoint and
returns. A second Ctrl-C interrupts at once (``KeyboardInterrupt``) for when saving itself hangs.

In a multi-process run every process has its handler, and a signal to any one of them (a
scheduler may preempt a single host) stops all of them at the same step.

>>> import os, signal
>>> with StopRequest() as stop:
...   os.kill(os.getpid(), signal.SIGTERM)
...   stop.requested, stop.agreed(sync=False)
(True, True)
"""

import signal
import threading
from types import FrameType
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:
    """Context manager that records SIGTERM/SIGINT instead of dying on them."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def agreed(self, sync: bool) -> bool:
        """Whether to stop after this step: the same answer on every process.

        A process that stopped alone would leave the others waiting in the next step's gradient
        all-reduce for ever. With several processes the requests are therefore gathered, at the
        steps where the loop reads the devices anyway (``sync``: a logged step), and a request on
        any process stops them all there. With one process the answer is the request itself.
        """
        if jax.process_count() == 1:
            return self.requested
        return sync and bool(multihost_utils.process_allgather(np.int32(self.requested)).any())

    def __enter__(self) -> "StopRequest":
        # Handlers can only be installed from the main thread; elsewhere (e.g. a test runner's
        # worker thread) the default behaviour is kept.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
