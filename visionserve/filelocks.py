"""One file lock helper for everything the store builds once: models, TensorRT engines, checkpoint exports.

The lock is an flock on a file, shared by every process and thread (each holder opens its own descriptor). The
kernel drops it when its holder dies, kill -9 included, so a crash never leaves a lock that stays held; the file
itself is removed before release, and a waiter that then holds the unlinked file takes a fresh one (filelock
checks), so none pile up either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


def lock_beside(path: Path) -> Path:
    """The lock file of a folder or file that is built once: `<name>.lock` next to it."""
    return path.with_name(f"{path.name}.lock")


@contextmanager
def held(lock_file: Path, timeout_s: float = -1, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold `lock_file` (filelock's Timeout after `timeout_s`; -1 waits). When another holder has it, `waiting`
    is called once before the wait, so the user sees why nothing happens."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, timeout=timeout_s)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting is not None:
            waiting()
        lock.acquire()
    try:
        yield
    finally:
        lock_file.unlink(missing_ok=True)
        lock.release()
