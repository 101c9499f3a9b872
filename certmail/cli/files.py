"""Files a command writes for the user (``-o``): durably, and never over one unasked."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def write_new(output: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``output`` as :func:`new_file` does."""
    with new_file(output, force) as f:
        f.write(data)


@contextlib.contextmanager
def new_file(output: Path, force: bool) -> Iterator[BinaryIO]:
    """A temporary file beside ``output`` to write (from its start); when the block ends
    without an error it is flushed, fsync'd and renamed to ``output``.

    Without ``force`` an ``output`` that exists by the time of the rename is left
    alone (callers check first too, before their work): ConflictError. An unwritable
    place is a plain Error naming it; the temporary file never stays behind.
    """
    from keys.errors import ConflictError, Error

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}-", dir=output.parent)
    except OSError as e:
        raise Error(f"cannot write {output}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not force and output.exists():
            raise ConflictError(f"{output} exists", hint="choose another -o or pass --force")
        os.replace(tmp, output)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise Error(f"cannot write {output}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
