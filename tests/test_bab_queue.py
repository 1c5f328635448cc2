"""The cell queue: best-first order, depth-first above ``max_queue``, and memory that follows the
live cells (heaps compacted, weights of processed cells dropped) on long runs."""

from __future__ import annotations

import numpy as np

from hybridq.bab.queue import CellQueue
from hybridq.cell import Cell


def _cell(depth):
    c = Cell.root(np.zeros(1), np.ones(1), 2)
    c.depth = depth
    return c


def test_best_first_then_deepest_first_above_max_queue():
    q = CellQueue(max_queue=4)
    for prio, depth in [(1.0, 1), (5.0, 1), (3.0, 2)]:
        q.push(_cell(depth), prio, 1.0)
    assert q.pop()[1].priority == 5.0  # best first while small
    for prio, depth in [(0.5, 7), (2.0, 3), (9.0, 1)]:
        q.push(_cell(depth), prio, 1.0)
    assert len(q) == 5 and q.pop()[1].depth == 7  # above max_queue: the deepest cell first


def test_memory_follows_the_live_cells_on_a_long_run():
    """A long depth-first run (every popped cell splits in two down to depth 30, then closes):
    the live queue, both heaps and the weights stay within a constant of the live cells, while
    the cells ever pushed grow to many times that."""
    q = CellQueue(max_queue=64)
    q.push(_cell(0), 1.0, 1.0)
    peak = 0
    decided = 0.0
    rng = np.random.default_rng(0)
    for _ in range(4000):
        batch = [q.pop() for _ in range(min(8, len(q)))]
        for cid, cell in batch:
            w = q.weight[cid]
            if cell.depth < 3 or (cell.depth < 30 and rng.uniform() < 0.7):
                for _ in range(2):
                    q.push(_cell(cell.depth + 1), float(rng.uniform()), w / 2)
            else:
                decided += w
        q.release([cid for cid, _ in batch])
        peak = max(peak, len(q.heap) + len(q.deep) + len(q.weight))
        assert len(q.weight) == len(q)
        if not q:
            break
    assert q.next_id > 5000  # a long run
    assert len(q) <= 64 + 30 * 8 * 2
    assert peak <= 5 * (64 + 30 * 8 * 2) + 2 * 1024
    # the weights of everything decided plus what is still live add up to the root's
    assert abs(decided + sum(q.weight.values()) - 1.0) < 1e-9


def test_requeued_cells_keep_their_weight():
    q = CellQueue(max_queue=10)
    q.push(_cell(0), 1.0, 0.25)
    cid, cell = q.pop()
    q.requeue(cid, cell)
    q.release([cid])
    assert q.weight[cid] == 0.25 and q.pop()[0] == cid
