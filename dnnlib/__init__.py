"""Framework-independent helpers: attribute dicts, construction by dotted name, URL opening with a
download cache, and a stdout/stderr log tee (see `dnnlib.util`)."""

from . import util
from .util import EasyDict, make_cache_dir_path

__all__ = ['util', 'EasyDict', 'make_cache_dir_path']
