"""Writing files so that a kill at any moment leaves either the old or the new content, never half."""

import json
import os
import uuid


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file is created with mode 0666 so that the user's umask decides the final mode
    (tempfile.mkstemp would force 0600).
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, ".tmp-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, data):
    """Write ``data`` as indented JSON, atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False, default=str) + "\n")


def write_json_fast(path, data):
    """Write ``data`` as compact JSON in place (one open, one write): for per-run files of short runs."""
    text = json.dumps(data, allow_nan=False, default=str, separators=(", ", ": "))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
    finally:
        os.close(fd)
