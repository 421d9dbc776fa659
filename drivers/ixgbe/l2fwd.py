"""ixy-fwd style forwarding logic, pure and vectorised over a batch.

``forward(mem, offsets)`` touches every packet (increments byte 1, as ixy-fwd
does, so the data really goes through the CPU) and swaps the destination and
source MAC addresses in place, with one numpy gather and one scatter for the
whole batch.  ``mem`` is a uint8 numpy view of the memory the offsets index
(the exchange heap / DMA buffer).
"""
from __future__ import annotations

import numpy as np

from .descriptors import byte_rows

_SWAP = np.array([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5], dtype=np.int64)
_ROWS: dict = {}   # id(mem) -> (mem, view): rows of 12 bytes starting at every byte of mem


def _mac_rows(mem: np.ndarray) -> np.ndarray:
    """A view of `mem` whose row i is mem[i:i + 12]: a batch's MAC headers are one
    gather and one scatter of rows (no (batch, 12) index array to build)."""
    hit = _ROWS.get(id(mem))
    if hit is not None and hit[0] is mem:
        return hit[1]
    if len(_ROWS) > 8:
        _ROWS.clear()
    v = byte_rows(mem, 12)
    _ROWS[id(mem)] = (mem, v)
    return v


def forward(mem: np.ndarray, offsets: np.ndarray, touch: bool = True) -> None:
    """Swap dst/src MAC of every frame at ``offsets`` (and touch byte 1 first)."""
    offs = np.asarray(offsets, dtype=np.int64)
    if offs.size == 0:
        return
    rows = _mac_rows(mem)
    hdr = rows[offs]                     # (n, 12) gather
    if touch:
        hdr[:, 1] += 1                   # uint8 wrap-around, like buf->data[1]++
    rows[offs] = hdr[:, _SWAP]           # scatter swapped


def forward_step(rx_dev, tx_dev, mem: np.ndarray, batch: int = 32, touch: bool = True) -> tuple[int, int]:
    """One ixy-fwd iteration: receive a batch on ``rx_dev``, rewrite, send on
    ``tx_dev``; buffers the TX ring could not take go back to ``rx_dev``'s pool,
    buffers ``tx_dev`` finished with are returned to ``rx_dev``'s pool.

    Devices expose the driver_core array API (rx_batch_arrays, tx_batch_arrays,
    tx_reclaim_arrays, give_rx_buffers).  Returns (received, sent).
    """
    done = tx_dev.tx_reclaim_arrays()
    if done.size:
        rx_dev.give_rx_buffers(done)
    offs, lens = rx_dev.rx_batch_arrays(batch)
    if offs.size == 0:
        return 0, 0
    forward(mem, offs, touch)
    sent = tx_dev.tx_batch_arrays(offs, lens)
    if sent < offs.size:
        rx_dev.give_rx_buffers(offs[sent:])          # dropped: recycle
    return int(offs.size), sent
