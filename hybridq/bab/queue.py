"""The branch-and-bound cell queue: best-first by the parent's certified bound, depth-first when large.

Cells are kept by id with their priority (the parent's margin bound; larger is examined first) and
their *weight*, the share of the root's search space they stand for (halved at every split), from
which the decided fraction is summed.  Above ``max_queue // 2`` live cells new cells are also
indexed depth-first, and above ``max_queue`` the deepest cell is taken first, so a long run closes
cells instead of growing the queue without bound.  The two heaps delete lazily; they are compacted
when their stale entries outnumber the live cells, and the weights of processed cells are dropped
(:meth:`CellQueue.release`), so the queue's memory follows its live cells, not the cells ever seen.
"""

from __future__ import annotations

import heapq

from hybridq.cell import Cell

__all__ = ["CellQueue"]


class CellQueue:
    """Best-first queue of ``(cell id, Cell)`` with a depth-first mode above ``max_queue`` cells."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.heap: list = []  # (-priority, id)
        self.deep: list = []  # (-depth, -priority, id) for depth-first when the queue is large
        self.live: dict = {}  # id -> (cell, priority)
        self.weight: dict = {}  # id -> share of the root's search space
        self.next_id = 0

    def __len__(self) -> int:
        return len(self.live)

    def push(self, cell: Cell, prio: float, weight: float) -> int:
        """Add a cell with priority ``prio`` (stored in ``cell.priority``); returns its id."""
        cid = self.next_id
        cell.priority = prio
        self.weight[cid] = weight
        self.live[cid] = (cell, prio)
        heapq.heappush(self.heap, (-prio, cid))
        if len(self.live) > self.max_queue // 2:
            heapq.heappush(self.deep, (-cell.depth, -prio, cid))
        self.next_id += 1
        self._compact()
        return cid

    def _compact(self) -> None:
        """Drop the heaps' stale entries (cells already popped through the other heap)."""
        limit = 2 * len(self.live) + 1024
        if len(self.heap) > limit:
            self.heap = [e for e in self.heap if e[-1] in self.live]
            heapq.heapify(self.heap)
        if len(self.deep) > limit:
            self.deep = [e for e in self.deep if e[-1] in self.live]
            heapq.heapify(self.deep)

    def release(self, ids) -> None:
        """Forget the weights of processed cells (ids of cells put back with :meth:`requeue` stay)."""
        for cid in ids:
            if cid not in self.live:
                self.weight.pop(cid, None)

    def pop(self):
        """The next ``(id, cell)`` (best first, deepest first above ``max_queue``), or None."""
        h = self.deep if len(self.live) > self.max_queue and self.deep else self.heap
        while h:
            cid = heapq.heappop(h)[-1]
            if cid in self.live:
                cell, _ = self.live.pop(cid)
                return cid, cell
        return None

    def requeue(self, cid: int, cell: Cell) -> None:
        """Put a popped cell back unchanged (its chunk was not processed)."""
        self.live[cid] = (cell, cell.priority)
        heapq.heappush(self.heap, (-cell.priority, cid))

    def cells(self) -> list:
        """The live ``(cell, priority)`` pairs."""
        return list(self.live.values())
