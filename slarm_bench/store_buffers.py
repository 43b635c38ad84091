"""Output memory for the store's window reads, recycled once the caller drops every array of a window.

A 20-frame, 3-camera window at 160x240 decodes to about 74 MB. Freshly allocated, that memory is mapped and
zeroed by the kernel page by page on every read (measured: 18 ms of system time per window, as much as the
decoding itself), because glibc hands such large blocks back to the kernel as soon as they are freed.
Reusing the blocks of a window the caller has finished with costs nothing of the kind.

Safety: a block goes back to the pool only when the array handed out for it has been garbage collected
together with every view of it: numpy collapses the `.base` of a view down the chain of plain arrays but
stops at an array of another type, so with the block an ndarray subclass, each view's base is the handed-out
array itself, and a tensor made by torch.from_numpy keeps that alive too. `get` checks this numpy behaviour
and stops recycling if it ever changes. Raw pointers taken out of an array (`.ctypes.data`) outlive
nothing, as with any numpy array.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

# Free blocks kept: per (shape, dtype) enough for a loader that holds one window while reading the next
# (fields share a key: a window has four bool masks of one shape), and at most this many bytes in all.
MAX_FREE_PER_SHAPE = 8
MAX_FREE_BYTES = 1 << 30


class _Block(np.ndarray):
    """Storage of the pool: a type of its own so that view bases stop collapsing at the handed-out array."""


class BufferPool:
    """Arrays of a given shape and dtype, recycled after their last user is gone (thread-safe)."""

    def __init__(self, max_free_per_shape: int = MAX_FREE_PER_SHAPE,
                 max_free_bytes: int = MAX_FREE_BYTES) -> None:
        self._free: dict[tuple, list[_Block]] = {}
        self._free_bytes = 0
        self._lock = threading.Lock()
        self.max_free, self.max_free_bytes = int(max_free_per_shape), int(max_free_bytes)
        self.recycling = True

    def get(self, shape: tuple[int, ...], dtype: np.dtype, zero: bool) -> np.ndarray:
        """A C-contiguous array [shape] of `dtype`; zero=True fills it with zeros, else its contents are
        arbitrary."""
        dtype = np.dtype(dtype)
        key = (tuple(int(s) for s in shape), dtype.str)
        if not self.recycling:
            return (np.zeros if zero else np.empty)(key[0], dtype)
        with self._lock:
            free = self._free.get(key)
            block = free.pop() if free else None
            if block is not None:
                self._free_bytes -= block.nbytes
        if block is None:
            block = np.ndarray.__new__(_Block, key[0], dtype)
        if zero:
            block.fill(0)
        out = block.view(np.ndarray)
        if out[...].base is not out:  # numpy no longer stops at the subclass: recycling would be unsafe
            self.recycling = False
            self.clear()
            return (np.zeros if zero else np.empty)(key[0], dtype)
        weakref.finalize(out, self._release, key, block).atexit = False  # nothing to give back at exit
        return out

    def _release(self, key: tuple, block: _Block) -> None:
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.max_free and self._free_bytes + block.nbytes <= self.max_free_bytes:
                free.append(block)
                self._free_bytes += block.nbytes

    def clear(self) -> None:
        """Drop every free block (arrays still in use are unaffected)."""
        with self._lock:
            self._free.clear()
            self._free_bytes = 0
