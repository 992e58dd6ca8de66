"""Drop files that hand their bytes over slowly, in small COPY batches, so that a fault test
finds a COPY still running when it strikes. tests/test_faults.py applies it in its own process
and in the loader process it starts and kills."""

from __future__ import annotations

import time


class SlowFile:
    """A file object reading at most 512 bytes or one line at a time, 10 ms apart."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def read(self, size=-1):
        time.sleep(0.01)
        return self.fh.read(size if size is None or size < 0 else min(size, 512))

    def __iter__(self):
        for line in self.fh:
            time.sleep(0.01)
            yield line


def apply(set_attr) -> None:
    """Slow the loader down through ``set_attr`` (``setattr``, or a monkeypatch's)."""
    import psycopg._copy_base

    from crm360 import ingest
    from crm360.ingest import jsonfile

    open_file = ingest.Drop.open
    set_attr(jsonfile, "COPY_BATCH_LINES", 5)
    set_attr(psycopg._copy_base, "BUFFER_SIZE", 64)
    set_attr(ingest.Drop, "open", lambda drop: SlowFile(open_file(drop)))
