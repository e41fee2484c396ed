"""Writing files so that a kill at any moment leaves either the old or the new content, never half."""

import json
import os
import tempfile


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, data):
    """Write ``data`` as indented JSON, atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False, default=str) + "\n")


_UMASK = None


def _umask():
    """The process umask (read once: os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK
