"""recvmmsg/sendmmsg for the daemons' shells, when `pip install` built them (mdcommon/_batch_io.c).

    from mdcommon.batch_io import BATCH
    if BATCH is not None: lengths = BATCH.recv_batch(sock.fileno(), buf, slot, count)

`BATCH` is None without the build, off Linux, or with MD_BACKEND=python (the same switch as
the wire backend): the shells then receive and send one datagram per call, as before. This
module holds no socket; the shells that do are `*_io.py`.
"""

from __future__ import annotations

from types import ModuleType

from decoders.native import wanted_backend

__all__ = ["BATCH", "SEND_SLICE", "send_all_to"]


def _load() -> ModuleType | None:
    if wanted_backend() == "python":
        return None
    try:
        from . import _batch_io  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _batch_io


BATCH = _load()
SEND_SLICE = 1024 if BATCH is None else BATCH.MAX_BATCH


def send_all_to(fd: int, datagrams: list, destinations: list, on_error) -> int:
    """Send every datagram, datagram i to destinations[i] (an (IPv4 host, port) tuple), with as few sendmmsg calls as
    the kernel allows: a run that alternates between destinations through one socket (a capture's A and B feeds) still
    leaves by few calls. A datagram the kernel refuses is reported as `on_error(index, errno)` and skipped, as a
    refused sendto would be. Returns how many left."""
    assert BATCH is not None
    sent, i, n = 0, 0, len(datagrams)
    while i < n:
        j = min(n, i + SEND_SLICE)
        done, err = BATCH.send_batch_to(fd, datagrams[i:j], destinations[i:j])
        sent += done
        i += done
        if err:
            on_error(i, err)
            i += 1
    return sent
