"""Small general utilities: attribute dicts, lookup and construction by dotted name, URL opening
with an offline-friendly download cache, a stdout/stderr log tee, and time formatting."""

import glob
import hashlib
import http.client
import importlib
import io
import os
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

CACHE_DIR_ENV_VARS = ('PORTRAIT3D_CACHE_DIR', 'DNNLIB_CACHE_DIR')  # checked in this order


class EasyDict(dict):
    """A dict whose keys can also be read, written and deleted as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f'EasyDict has no key {name!r}') from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f'EasyDict has no key {name!r}') from None


# ----------------------------------------------------------------------------------------------
# Lookup and construction by dotted name ('package.module.Class').

def _resolve_attrs(obj, attr_names):
    """Follow attr_names from obj; returns (obj, None) or (None, first missing attribute name)."""
    for attr in attr_names:
        if not hasattr(obj, attr):
            return None, attr
        obj = getattr(obj, attr)
    return obj, None


def get_module_from_obj_name(obj_name):
    """Split 'pkg.mod.Obj.attr' into (imported module, 'Obj.attr'), preferring the longest module.

    Raises ImportError when no prefix is an importable module and AttributeError when the
    module exists but lacks the attribute; both messages name the full dotted path. An
    ImportError raised *inside* an existing module (a missing dependency) propagates unchanged.
    """
    parts = obj_name.split('.')
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"expected a dotted path like 'package.module.Name', got {obj_name!r}")
    missing_attr = None
    for split in range(len(parts) - 1, 0, -1):
        module_name = '.'.join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and (module_name == err.name or module_name.startswith(err.name + '.')):
                continue
            raise
        _, missing = _resolve_attrs(module, parts[split:])
        if missing is None:
            return module, '.'.join(parts[split:])
        if missing_attr is None:
            missing_attr = (module_name, missing)
    if missing_attr is not None:
        module_name, attr = missing_attr
        raise AttributeError(f'cannot find {obj_name!r}: module {module_name!r} has no attribute {attr!r}')
    raise ImportError(f'cannot find {obj_name!r}: no module named {parts[0]!r}')


def get_obj_from_module(module, obj_name):
    """Return the (possibly nested, 'Outer.Inner') attribute obj_name of module."""
    obj, missing = _resolve_attrs(module, obj_name.split('.'))
    if missing is not None:
        raise AttributeError(f'module {module.__name__!r} has no attribute {obj_name!r}')
    return obj


def get_obj_by_name(name):
    """Return the Python object at the dotted path name, e.g. 'torch.nn.Linear'."""
    module, obj_name = get_module_from_obj_name(name)
    return get_obj_from_module(module, obj_name)


def call_func_by_name(*args, func_name=None, **kwargs):
    """Look up the callable at the dotted path func_name and call it with the given arguments."""
    if func_name is None:
        raise ValueError('func_name is required')
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f'{func_name!r} is not callable')
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name=None, **kwargs):
    """Instantiate the class at the dotted path class_name with the given arguments."""
    if class_name is None:
        raise ValueError('class_name is required')
    return call_func_by_name(*args, func_name=class_name, **kwargs)


# ----------------------------------------------------------------------------------------------
# Cache directory and URL opening.

def make_cache_dir_path(*paths):
    """Path under the cache root: $PORTRAIT3D_CACHE_DIR, else $DNNLIB_CACHE_DIR, else
    $XDG_CACHE_HOME/dnnlib (default ~/.cache/dnnlib). The directory is not created."""
    for var in CACHE_DIR_ENV_VARS:
        if os.environ.get(var):
            return os.path.join(os.environ[var], *paths)
    base = os.environ.get('XDG_CACHE_HOME')
    if not base:
        home = os.path.expanduser('~')
        base = os.path.join(home, '.cache') if home != '~' else os.path.join(tempfile.gettempdir(), '.cache')
    return os.path.join(base, 'dnnlib', *paths)


class DownloadError(OSError):
    """An http(s) URL could not be fetched; the message says how to supply the file offline."""


def _local_path(url):
    """Filesystem path for a plain path or file:// URL; None for other URLs."""
    if '://' not in url:
        return os.path.expanduser(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != 'file':
        return None
    if parts.netloc not in ('', 'localhost'):
        raise ValueError(f'file:// URL with a remote host is not supported: {url}')
    return urllib.request.url2pathname(parts.path)


def url_cache_prefix(url):
    """File-name prefix of url in the cache directory: '<md5 of the URL>_'."""
    return hashlib.md5(url.encode('utf-8')).hexdigest() + '_'


def _cache_file_name(url):
    """Cache file name: '<md5 of the URL>_<last path component, sanitised>'."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip('/').split('/')[-1])
    return url_cache_prefix(url) + (re.sub(r'[^0-9a-zA-Z._-]', '_', name) or 'download')


def _find_cached(url, cache_dir):
    """Existing cache file for url (any '<md5>_*' name, as EG3D writes them), or None."""
    matches = sorted(glob.glob(os.path.join(glob.escape(cache_dir), url_cache_prefix(url) + '*')))
    return next((path for path in matches if os.path.isfile(path)), None)


def _fetch(url, out, timeout):
    """Stream url into the binary file object out; raises urllib/socket errors on failure."""
    request = urllib.request.Request(url, headers={'User-Agent': 'dnnlib-open-url'})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        expected = response.headers.get('Content-Length')
        size = 0
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
            size += len(chunk)
    if expected is not None and size != int(expected):
        raise ConnectionResetError(f'download truncated at {size} of {expected} bytes')


def _is_transient(err):
    """True for errors worth retrying (timeouts, resets, server-side HTTP errors)."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code == 429
    if isinstance(err, urllib.error.URLError):
        err = err.reason
    return isinstance(err, (socket.timeout, TimeoutError, ConnectionResetError, http.client.IncompleteRead))


def _describe(err):
    """Short, single-line description of a download error."""
    if isinstance(err, urllib.error.HTTPError):
        return f'HTTP {err.code} {err.reason}'
    if isinstance(err, urllib.error.URLError):
        err = err.reason
    return ' '.join(str(err).split()) or type(err).__name__


def _download(url, out, cache_dir, num_attempts, timeout, verbose):
    """Fetch url into out with up to num_attempts tries; raises DownloadError (one line)."""
    if verbose:
        print(f'Downloading {url} ...', end='', flush=True)
    for attempt in range(1, num_attempts + 1):
        out.seek(0)
        out.truncate()
        try:
            _fetch(url, out, timeout)
            break
        except (OSError, http.client.HTTPException) as err:
            if attempt < num_attempts and _is_transient(err):
                continue
            if verbose:
                print(' failed', flush=True)
            vars_hint = ' or '.join(f'${var}' for var in CACHE_DIR_ENV_VARS)
            raise DownloadError(
                f'cannot download {url} ({_describe(err)}); pass a local path or file:// URL instead, or put the file '
                f'at {os.path.join(cache_dir, _cache_file_name(url))} (cache root set by {vars_hint})') from None
    if verbose:
        print(' done', flush=True)


def open_url(url, cache_dir=None, num_attempts=3, verbose=True, return_filename=False, cache=True, timeout=30.0):
    """Open a local path, file:// URL or http(s) URL as a binary file object (or return its path).

    http(s) URLs are downloaded once into cache_dir (default make_cache_dir_path('downloads'))
    as '<md5 of URL>_<name>', written to a temporary file and renamed atomically; later calls
    use the cached file without any network access. timeout (seconds) bounds every socket
    operation; a failed download raises DownloadError (an OSError) with a one-line message.
    return_filename=True returns the local path instead and needs cache=True for URLs.
    """
    path = _local_path(url)
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'no such file: {path}')
        return path if return_filename else open(path, 'rb')
    if urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
        raise ValueError(f'unsupported URL scheme (expected a path, file://, http:// or https://): {url}')
    if return_filename and not cache:
        raise ValueError('return_filename=True needs cache=True for http(s) URLs')
    cache_dir = cache_dir if cache_dir is not None else make_cache_dir_path('downloads')
    if not cache:
        buffer = io.BytesIO()
        _download(url, buffer, cache_dir, num_attempts, timeout, verbose)
        buffer.seek(0)
        return buffer
    path = _find_cached(url, cache_dir)
    if path is None:
        os.makedirs(cache_dir, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=cache_dir, prefix='.tmp-')
        try:
            with os.fdopen(fd, 'wb') as tmp_file:
                _download(url, tmp_file, cache_dir, num_attempts, timeout, verbose)
            path = os.path.join(cache_dir, _cache_file_name(url))
            os.replace(tmp_path, path)
        finally:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
    return path if return_filename else open(path, 'rb')


# ----------------------------------------------------------------------------------------------
# Logging and formatting.

class _TeeStream:
    """Text stream writing to an original stream and to a shared log file."""

    def __init__(self, stream, log_file, should_flush):
        self.stream = stream
        self.log_file = log_file
        self.should_flush = should_flush

    def write(self, text):
        """Write text to both targets; returns the number of characters written."""
        self.stream.write(text)
        if self.log_file is not None and not self.log_file.closed:
            self.log_file.write(text)
        if self.should_flush:
            self.flush()
        return len(text)

    def flush(self):
        """Flush both targets."""
        self.stream.flush()
        if self.log_file is not None and not self.log_file.closed:
            self.log_file.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)  # encoding, isatty(), fileno(), ... of the original


class Logger:
    """Tee sys.stdout and sys.stderr into a log file until close(); usable as a context manager."""

    def __init__(self, file_name=None, file_mode='w', should_flush=True):
        self.file = open(file_name, file_mode, encoding='utf-8') if file_name is not None else None
        self.should_flush = should_flush
        self.stdout, self.stderr = sys.stdout, sys.stderr
        sys.stdout = _TeeStream(self.stdout, self.file, should_flush)
        sys.stderr = _TeeStream(self.stderr, self.file, should_flush)

    def flush(self):
        """Flush stdout, stderr and the log file."""
        sys.stdout.flush()
        sys.stderr.flush()

    def close(self):
        """Restore the original streams and close the log file; safe to call twice."""
        self.flush()
        if isinstance(sys.stdout, _TeeStream) and sys.stdout.stream is self.stdout:
            sys.stdout = self.stdout
        if isinstance(sys.stderr, _TeeStream) and sys.stderr.stream is self.stderr:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def format_time(seconds):
    """Human-readable duration: '7s', '5m 06s', '2h 05m 06s', '1d 02h 03m'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {s // 3600 % 24:02d}h {s // 60 % 60:02d}m'
