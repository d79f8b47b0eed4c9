"""Atomic dataset writer: an uncompressed zip or a folder that appears only when complete.

Everything is written to a temporary sibling of the destination (same folder, so the final
`os.replace` is atomic); on success it replaces the destination, on any exception (Ctrl-C
included) it is deleted and an existing destination is left untouched.
"""
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from portrait_data.errors import DatasetError
from portrait_data.images import encode_png


@dataclass(frozen=True)
class WriteSummary:
    """What a dataset build wrote (`ignored_records`: source label entries with no image)."""
    images: int
    resolution: int
    dest: str
    seg_dest: Optional[str]
    ignored_records: int = 0


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_destination(dest: str, force: bool) -> str:
    """Absolute `dest`; DatasetError if it exists and `force` is off, or has the wrong kind."""
    dest = os.path.abspath(os.fspath(dest))
    is_zip = dest.lower().endswith('.zip')
    if os.path.lexists(dest):
        if not force:
            raise DatasetError(f'{dest}: already exists (pass --force to overwrite)')
        if is_zip and os.path.isdir(dest):
            raise DatasetError(f'{dest}: is a folder; refusing to replace it with a zip file')
        if not is_zip and not os.path.isdir(dest):
            raise DatasetError(f'{dest}: is a file; refusing to replace it with a folder')
    return dest


class DatasetWriter:
    """Context manager writing members by relative POSIX path into `dest` (a .zip or a folder).

    with DatasetWriter('out/images.zip', force=False) as w:
        w.write_image('a/b.png', uint8 [H, W, 3])
        w.write_json('dataset.json', {...})
    """

    def __init__(self, dest: str, force: bool = False):
        """Check the destination now (refusal to overwrite happens before any work)."""
        self.dest = check_destination(dest, force)
        self.is_zip = self.dest.lower().endswith('.zip')
        self._tmp: Optional[str] = None
        self._zip: Optional[zipfile.ZipFile] = None
        self._names = set()

    def __enter__(self) -> 'DatasetWriter':
        """Create the temporary file or folder next to the destination."""
        parent = os.path.dirname(self.dest)
        os.makedirs(parent, exist_ok=True)
        prefix = f'.{os.path.basename(self.dest)}.'
        if self.is_zip:
            fd, self._tmp = tempfile.mkstemp(prefix=prefix, suffix='.tmp', dir=parent)
            os.close(fd)
            self._zip = zipfile.ZipFile(self._tmp, 'w', compression=zipfile.ZIP_STORED)
        else:
            self._tmp = tempfile.mkdtemp(prefix=prefix, suffix='.tmp', dir=parent)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit on success, remove the temporary on any exception (which then propagates)."""
        if exc_type is not None:
            self._abort()
            return
        try:
            self._commit()
        except BaseException:
            self._abort()
            raise

    def write_bytes(self, name: str, data: bytes) -> None:
        """Store `data` as member `name` ('a/b.png'; no absolute paths, '..' or duplicates)."""
        if self._tmp is None:
            raise RuntimeError('DatasetWriter: use it as a context manager')
        parts = name.split('/')
        if not name or name.startswith('/') or '\\' in name or any(p in ('', '.', '..') for p in parts):
            raise DatasetError(f"{self.dest}: member name '{name}' is not a clean relative path")
        if name in self._names:
            raise DatasetError(f"{self.dest}: member '{name}' written twice")
        self._names.add(name)
        if self._zip is not None:
            self._zip.writestr(name, data)
            return
        path = os.path.join(self._tmp, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)

    def write_image(self, name: str, array: np.ndarray) -> None:
        """Store uint8 [H, W] or [H, W, 3] as a PNG member."""
        self.write_bytes(name, encode_png(array))

    def write_json(self, name: str, obj) -> None:
        """Store a JSON member."""
        self.write_bytes(name, json.dumps(obj).encode('utf-8'))

    def _commit(self) -> None:
        """Finish the temporary and move it onto the destination."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None
            os.chmod(self._tmp, 0o666 & ~_umask())
            os.replace(self._tmp, self.dest)
        else:
            os.chmod(self._tmp, 0o777 & ~_umask())
            self._replace_folder()
        self._tmp = None

    def _replace_folder(self) -> None:
        """Swap the finished temporary folder in; an old destination is removed only afterwards."""
        if not os.path.exists(self.dest):
            os.replace(self._tmp, self.dest)
            return
        old = tempfile.mkdtemp(prefix=f'.{os.path.basename(self.dest)}.', suffix='.old', dir=os.path.dirname(self.dest))
        os.rmdir(old)
        os.replace(self.dest, old)
        os.replace(self._tmp, self.dest)
        shutil.rmtree(old)

    def _abort(self) -> None:
        """Delete the temporary (the destination was never touched)."""
        try:
            if self._zip is not None:
                self._zip.close()
        finally:
            self._zip = None
            if self._tmp is not None and os.path.isdir(self._tmp):
                shutil.rmtree(self._tmp, ignore_errors=True)
            elif self._tmp is not None and os.path.exists(self._tmp):
                os.remove(self._tmp)
            self._tmp = None


def enter_writers(stack: ExitStack, dest: str, seg_dest: Optional[str], force: bool) -> List[Optional[DatasetWriter]]:
    """[image writer, mask writer or None] entered on `stack`; both destinations are checked first."""
    writers = [DatasetWriter(dest, force)]
    if seg_dest is not None:
        writers.append(DatasetWriter(seg_dest, force))
        if writers[1].dest == writers[0].dest:
            raise DatasetError(f'{writers[0].dest}: images and masks cannot go to the same destination')
    return [stack.enter_context(w) for w in writers] + [None] * (2 - len(writers))
