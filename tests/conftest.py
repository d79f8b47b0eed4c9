"""Shared pytest fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Run torch single-threaded: tests of many tiny ops only lose time to thread hand-offs, and idle
    OpenMP threads spin on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
