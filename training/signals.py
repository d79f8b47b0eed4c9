"""SIGTERM / SIGINT during training: the first asks for a checkpoint and a clean exit, a second exits now.

The first signal only sets a flag; the training loop checks it at the next step boundary, writes
a training state and returns. A second signal raises SystemExit at once: any checkpoint write in
progress is abandoned, and because writes are atomic (temporary file + rename) the previous
checkpoint stays intact and loadable.
"""
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_CODE_BASE = 128              # shell convention: exit status 128 + signal number


class StopRequest:
    """Context manager installing the handlers (main thread only; elsewhere a no-op) and restoring them."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    def _handle(self, signum, frame):
        """First signal: set the flag. Second: exit immediately."""
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(f'{name} again: exiting now, without a checkpoint', file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CODE_BASE + signum)
        self.signum = signum
        print(f'{name}: writing a training state at the end of this step, then exiting '
              '(send it again to exit at once)', file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
