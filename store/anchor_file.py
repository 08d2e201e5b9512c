"""The ledger's anchor file: one ``<seq> <hash>`` line appended after every committed ledger append (dev,
tests; a deployment's shared anchor is :mod:`store.anchors`).

The file lock is taken *before* the append commits and released after the line is written, so lines stay
in seq order across threads (a ``threading.Lock``) and processes (``flock``). Writing happens after the
commit: a failure to write is logged and never undoes the entry — the anchor lags until the next append
writes the newer head. This module never reads the file; :func:`store.ledger.read_anchor` does.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import IO

from store.errors import StoreError

log = logging.getLogger(__name__)


class AnchorFile:
    """One anchor file, shared by every thread of a store. ``lock()`` before the commit, then ``write_heads``
    and ``release`` on what it returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self._lock = threading.Lock()

    def lock(self) -> HeldAnchor:
        """Take the thread lock and the file lock."""
        self._lock.acquire()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a", encoding="ascii")
        except OSError as exc:
            self._lock.release()
            raise StoreError(
                f"cannot open the ledger anchor file {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            self._lock.release()
            raise
        return HeldAnchor(self.path, fh, self._lock)


class HeldAnchor:
    """The anchor file while its locks are held: write the new heads once, then always ``release``."""

    def __init__(self, path: Path, fh: IO[str], lock: threading.Lock) -> None:
        self._path = path
        self._fh = fh
        self._lock = lock

    def write_heads(self, heads: list[tuple[int, str]]) -> None:
        """Append one line per head, in order, with one fsync (a batch of appends committed together); a
        failure is logged, never raised (see above)."""
        if not heads:
            return
        try:
            created = self._fh.tell() == 0
            self._fh.write("".join(f"{seq} {digest}\n" for seq, digest in heads))
            self._fh.flush()
            os.fsync(self._fh.fileno())
            if created:
                _fsync_dir(self._path.parent)
        except OSError as exc:
            # The entries are committed; the anchor lags until the next append writes a newer head.
            log.error(
                "ledger entries %s-%s committed but the anchor file could not be written: %s",
                heads[0][0],
                heads[-1][0],
                exc,
            )

    def release(self) -> None:
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._lock.release()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
