"""SIGTERM and Ctrl-C turned into a request to save a checkpoint and stop.

Inside :class:`StopRequest` the first SIGTERM or SIGINT only sets :attr:`StopRequest.requested`;
the training loop checks it after each step, saves a final checkpoint and returns. A second
Ctrl-C interrupts at once (``KeyboardInterrupt``) for when saving itself hangs.

>>> import os, signal
>>> with StopRequest() as stop:
...   os.kill(os.getpid(), signal.SIGTERM)
...   stop.requested
True
"""

import signal
import threading
from types import FrameType
from typing import Any


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

    def __enter__(self) -> "StopRequest":
        # Handlers can only be installed from the main thread; elsewhere (e.g. a test runner's
        # worker thread) the default behaviour is kept.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
