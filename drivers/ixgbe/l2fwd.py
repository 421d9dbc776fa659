"""ixy-fwd style forwarding logic, pure and vectorised over a batch.

``forward(mem, offsets)`` touches every packet (increments byte 1, as ixy-fwd
does, so the data really goes through the CPU) and swaps the destination and
source MAC addresses in place, with one numpy gather and one scatter for the
whole batch.  ``mem`` is a uint8 numpy view of the memory the offsets index
(the exchange heap / DMA buffer).
"""
from __future__ import annotations

import numpy as np

_MAC12 = np.arange(12, dtype=np.int64)
_SWAP = np.array([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5], dtype=np.int64)


def forward(mem: np.ndarray, offsets: np.ndarray, touch: bool = True) -> None:
    """Swap dst/src MAC of every frame at ``offsets`` (and touch byte 1 first)."""
    offs = np.asarray(offsets, dtype=np.int64)
    if offs.size == 0:
        return
    idx = offs[:, None] + _MAC12
    hdr = mem[idx]                       # (n, 12) gather
    if touch:
        hdr[:, 1] += 1                   # uint8 wrap-around, like buf->data[1]++
    mem[idx] = hdr[:, _SWAP]             # scatter swapped


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
