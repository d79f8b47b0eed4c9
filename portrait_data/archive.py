"""Read-only access to the files of a dataset stored as a zip file or as a folder."""
import io
import os
import zipfile
from typing import BinaryIO, List, Optional

from portrait_data.errors import DatasetError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')


def _is_hidden(name: str) -> bool:
    """True for OS clutter: a path component starting with '.' or a '__MACOSX' folder."""
    return any(part.startswith('.') or part == '__MACOSX' for part in name.split('/'))


def _walk(root: str) -> List[str]:
    """All files under `root` as relative POSIX paths."""
    names = []
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for file in files:
            names.append(file if rel == '.' else f"{rel.replace(os.sep, '/')}/{file}")
    return names


class Archive:
    """The files of a zip or folder by relative POSIX path ('a/b.png'), hidden files excluded.

    The zip is opened lazily, once per process: pickling drops the open handle and a forked
    process notices the changed pid, so every DataLoader worker reads through its own handle.
    """

    def __init__(self, path: str):
        """List the files of the zip or folder at `path` (DatasetError if it is neither)."""
        self.path = os.path.abspath(os.fspath(path))
        if os.path.isdir(self.path):
            self.is_zip = False
            names = _walk(self.path)
        elif os.path.isfile(self.path):
            if not zipfile.is_zipfile(self.path):
                raise DatasetError(f'{self.path}: not a zip file or a folder')
            self.is_zip = True
            try:
                with zipfile.ZipFile(self.path) as z:
                    names = [n for n in z.namelist() if not n.endswith('/')]
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetError(f'{self.path}: unreadable zip file: {exc}') from exc
        else:
            raise DatasetError(f'{self.path}: no such zip file or folder')
        self.names = sorted(n for n in names if not _is_hidden(n))
        self._known = set(self.names)
        self._zip: Optional[zipfile.ZipFile] = None
        self._zip_pid: Optional[int] = None

    def describe(self, name: str) -> str:
        """Where a member lives, for error messages: '<zip>:<name>' or '<folder>/<name>'."""
        return f'{self.path}:{name}' if self.is_zip else os.path.join(self.path, *name.split('/'))

    def image_names(self) -> List[str]:
        """Sorted relative paths of the PNG/JPEG files."""
        return [n for n in self.names if n.lower().endswith(IMAGE_EXTENSIONS)]

    def __contains__(self, name: str) -> bool:
        """True if `name` is a (non-hidden) file of the archive."""
        return name in self._known

    def _zipfile(self) -> zipfile.ZipFile:
        """This process's handle to the zip, opened on first use."""
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def read(self, name: str) -> bytes:
        """The bytes of one member."""
        if self.is_zip:
            return self._zipfile().read(name)
        with open(self.describe(name), 'rb') as f:
            return f.read()

    def open(self, name: str) -> BinaryIO:
        """A binary stream of one member (reads only what the caller consumes)."""
        if self.is_zip:
            return self._zipfile().open(name)
        return io.open(self.describe(name), 'rb')

    def close(self) -> None:
        """Close this process's zip handle (it reopens on the next read)."""
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None
        self._zip_pid = None

    def __getstate__(self) -> dict:
        """Pickled state without the open zip handle."""
        state = dict(self.__dict__)
        state['_zip'] = None
        state['_zip_pid'] = None
        return state
