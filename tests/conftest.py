"""Shared pytest fixtures."""
import pytest

from thread_testing import torch_threads


@pytest.fixture
def one_thread():
    """Run torch single-threaded: tests of many tiny ops only lose time to thread hand-offs, and idle
    OpenMP threads spin on a busy machine."""
    with torch_threads(1):
        yield
