"""Tests for dnnlib.util: EasyDict, lookup by name, cache dir, open_url (offline), Logger, format_time."""

import copy
import hashlib
import http.server
import io
import os
import pickle
import socket
import sys
import threading
import time
import urllib.request

import pytest
import torch

import dnnlib
from dnnlib import util


def test_easydict_attribute_access_and_errors():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1 and d['b'] == 2
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError, match="'missing'"):
        d.missing
    with pytest.raises(AttributeError, match="'missing'"):
        del d.missing
    assert not hasattr(d, 'missing')


def test_easydict_pickle_and_deepcopy():
    d = dnnlib.EasyDict(x=[1, 2], y=dnnlib.EasyDict(z=3))
    for clone in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d)):
        assert type(clone) is dnnlib.EasyDict and clone == d and clone.y.z == 3
        assert clone.x is not d.x


def test_get_obj_by_name_resolves_nested_attributes():
    assert util.get_obj_by_name('torch.nn.Linear') is torch.nn.Linear
    assert util.get_obj_by_name('collections.OrderedDict.fromkeys') == __import__('collections').OrderedDict.fromkeys
    module, name = util.get_module_from_obj_name('os.path.join')
    assert module is os.path and name == 'join'


def test_get_obj_by_name_errors_name_the_path():
    with pytest.raises(ImportError, match="no_such_pkg_xyz.mod.Thing"):
        util.get_obj_by_name('no_such_pkg_xyz.mod.Thing')
    with pytest.raises(AttributeError, match=r"torch\.nn\.NoSuchLayer.*'torch\.nn'.*'NoSuchLayer'"):
        util.get_obj_by_name('torch.nn.NoSuchLayer')
    with pytest.raises(ValueError, match='dotted path'):
        util.get_obj_by_name('Linear')


def test_construct_and_call_by_name():
    layer = util.construct_class_by_name(2, class_name='torch.nn.Linear', out_features=3, bias=False)
    assert isinstance(layer, torch.nn.Linear) and layer.weight.shape == (3, 2) and layer.bias is None
    assert util.call_func_by_name(3.0, 4.0, func_name='math.hypot') == 5.0
    with pytest.raises(TypeError, match='not callable'):
        util.call_func_by_name(func_name='math.pi')


def test_make_cache_dir_path_precedence(monkeypatch, tmp_path):
    for var in ('PORTRAIT3D_CACHE_DIR', 'DNNLIB_CACHE_DIR', 'XDG_CACHE_HOME'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert dnnlib.make_cache_dir_path('downloads') == str(tmp_path / 'home' / '.cache' / 'dnnlib' / 'downloads')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert dnnlib.make_cache_dir_path('a', 'b') == str(tmp_path / 'xdg' / 'dnnlib' / 'a' / 'b')
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'dnnlib'))
    assert dnnlib.make_cache_dir_path('x') == str(tmp_path / 'dnnlib' / 'x')
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path / 'p3d'))
    assert dnnlib.make_cache_dir_path('x') == str(tmp_path / 'p3d' / 'x')


@pytest.fixture
def no_network(monkeypatch):
    """Make any urlopen call fail the test."""
    def refuse(*args, **kwargs):
        raise AssertionError('network access attempted')
    monkeypatch.setattr(urllib.request, 'urlopen', refuse)


def test_open_url_local_path_and_file_url(tmp_path, no_network):
    path = tmp_path / 'data dir' / 'blob.bin'
    path.parent.mkdir()
    path.write_bytes(b'\x00\x01payload')
    for url in (str(path), path.as_uri()):
        with util.open_url(url) as f:
            assert f.read() == b'\x00\x01payload'
        assert util.open_url(url, return_filename=True) == str(path)
    with pytest.raises(FileNotFoundError, match='missing.bin'):
        util.open_url(str(tmp_path / 'missing.bin'))


def test_open_url_serves_prepopulated_cache_without_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path))
    url = 'https://example.com/models/network.pkl'
    cache_dir = tmp_path / 'downloads'
    cache_dir.mkdir()
    cached = cache_dir / (hashlib.md5(url.encode('utf-8')).hexdigest() + '_network.pkl')
    cached.write_bytes(b'cached bytes')
    with util.open_url(url) as f:
        assert f.read() == b'cached bytes'
    assert util.open_url(url, return_filename=True) == str(cached)


class _BlobHandler(http.server.BaseHTTPRequestHandler):
    """Serves a fixed payload and counts requests."""
    payload = bytes(range(256)) * 1000
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        self.send_response(200)
        self.send_header('Content-Length', str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


def test_open_url_downloads_once_then_uses_cache(tmp_path, capsys):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _BlobHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f'http://127.0.0.1:{server.server_address[1]}/dir/weights%20v1.pkl'
    try:
        with util.open_url(url, cache_dir=str(tmp_path)) as f:
            assert f.read() == _BlobHandler.payload
        assert util.open_url(url, cache=False, verbose=False).read() == _BlobHandler.payload
    finally:
        server.shutdown()
        server.server_close()
    assert _BlobHandler.requests == 2
    with util.open_url(url, cache_dir=str(tmp_path)) as f:  # server is gone: must come from the cache
        assert f.read() == _BlobHandler.payload
    files = os.listdir(tmp_path)
    assert files == [hashlib.md5(url.encode('utf-8')).hexdigest() + '_weights_v1.pkl']
    assert url in capsys.readouterr().out


def _free_port():
    """A TCP port on 127.0.0.1 with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_open_url_unreachable_fails_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path))
    url = f'http://127.0.0.1:{_free_port()}/x.pkl'
    start = time.monotonic()
    with pytest.raises(OSError) as info:
        util.open_url(url, verbose=False)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert isinstance(info.value, util.DownloadError) and '\n' not in message
    assert url in message and 'file://' in message and 'PORTRAIT3D_CACHE_DIR' in message
    assert os.listdir(tmp_path / 'downloads') == []  # no partial file left behind


def test_open_url_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(('127.0.0.1', 0))
        listener.listen(4)
        url = f'http://127.0.0.1:{listener.getsockname()[1]}/slow.pkl'
        start = time.monotonic()
        with pytest.raises(util.DownloadError, match='timed out'):
            util.open_url(url, cache_dir=str(tmp_path), timeout=0.3, num_attempts=2, verbose=False)
        assert time.monotonic() - start < 5


def test_logger_tees_stdout_and_stderr(tmp_path):
    log_path = tmp_path / 'log.txt'
    stdout, stderr = sys.stdout, sys.stderr
    with util.Logger(file_name=str(log_path), file_mode='w', should_flush=True):
        print('to stdout')
        print('to stderr', file=sys.stderr)
        assert 'to stdout' in log_path.read_text()  # flushed immediately
    assert sys.stdout is stdout and sys.stderr is stderr
    print('after close')
    assert log_path.read_text() == 'to stdout\nto stderr\n'
    with util.Logger(file_name=str(log_path), file_mode='a'):
        print('appended')
    assert log_path.read_text().endswith('to stderr\nappended\n')


def test_logger_passes_stream_attributes_through():
    original = io.StringIO()
    tee = util._TeeStream(original, None, should_flush=False)
    assert tee.write('abc') == 3 and original.getvalue() == 'abc'
    assert tee.getvalue() == 'abc'  # attributes of the original stream stay reachable


@pytest.mark.parametrize('seconds, expected', [
    (7, '7s'), (0.4, '0s'), (59.6, '1m 00s'), (306, '5m 06s'),
    (2 * 3600 + 5 * 60 + 6, '2h 05m 06s'), (86400 + 2 * 3600 + 3 * 60 + 59, '1d 02h 03m'),
])
def test_format_time(seconds, expected):
    assert util.format_time(seconds) == expected
