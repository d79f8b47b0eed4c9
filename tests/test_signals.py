"""training/signals.py: the first SIGTERM/SIGINT asks for a stop, a second exits at once."""
import os
import signal
import time

import pytest

from training.signals import EXIT_CODE_BASE, StopRequest


def _deliver(signum, stop):
    """Send signum to this process and wait until Python ran the handler."""
    os.kill(os.getpid(), signum)
    deadline = time.monotonic() + 5
    while stop.signum is None and time.monotonic() < deadline:
        time.sleep(0.001)


def test_first_signal_requests_a_stop_and_a_second_exits_now(capsys):
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        _deliver(signal.SIGTERM, stop)
        assert stop.requested and stop.signum == signal.SIGTERM
        with pytest.raises(SystemExit) as exit_info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert exit_info.value.code == EXIT_CODE_BASE + signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is previous
    err = capsys.readouterr().err
    assert 'SIGTERM: writing a training state' in err and 'SIGINT again: exiting now' in err
