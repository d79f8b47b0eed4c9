"""Running test code with a given number of torch intra-op threads."""
import contextlib

import torch


@contextlib.contextmanager
def torch_threads(count: int):
    """torch.set_num_threads(count) for the body of the with-statement, then the previous count again."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
