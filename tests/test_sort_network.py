"""The sorting network of the kernels and its cache-blocked schedule.

``select.batcher_pairs`` is Batcher's odd-even merge sort; ``select.cache_blocked``
reorders its comparators to work on blocks of rows that fit the L1 cache. The
reordered network must be the same comparators, keep every row's comparators in
their original order (so it computes exactly the same thing), and sort like
``np.sort``, with ties and +inf (the missing values).
"""

from __future__ import annotations

import numpy as np
import pytest

from stackengine.kernels.engine import SORT_BLOCK_BYTES, network, sort_network
from stackengine.kernels.select import batcher_pairs, cache_blocked, network_sort
from stackengine.kernels.window import group_buffer


def row_sequences(pairs, n):
    seqs = [[] for _ in range(n)]
    for a, b in pairs:
        seqs[a].append((a, b))
        seqs[b].append((a, b))
    return seqs


@pytest.mark.parametrize("n", [2, 3, 7, 16, 33, 50, 100, 129, 257])
@pytest.mark.parametrize("block", [2, 4, 8, 32])
def test_cache_blocked_is_the_same_network_reordered(n, block):
    base = batcher_pairs(n)
    blocked = cache_blocked(base, n, block)
    assert sorted(map(tuple, blocked)) == sorted(map(tuple, base))
    # every row sees its comparators in the original order: the same computation
    assert row_sequences(blocked, n) == row_sequences(base, n)
    rng = np.random.default_rng(n * block)
    x = rng.integers(0, 5, size=(n, 40)).astype(np.float32)  # many ties
    x[rng.random(x.shape) < 0.1] = np.inf
    a, b = x.copy(), x.copy()
    network_sort(a, 40, base)
    network_sort(b, 40, blocked)
    np.testing.assert_array_equal(a, np.sort(x, axis=0))
    np.testing.assert_array_equal(b, a)


def test_block_locality():
    """Batcher's network sorts blocks before merging them: most comparators of the
    schedule run inside one block, in long runs."""
    n, block = 500, 32
    blocked = cache_blocked(batcher_pairs(n), n, block)
    inside = (blocked[:, 0] // block) == (blocked[:, 1] // block)
    assert inside.mean() > 0.3
    switches = np.count_nonzero(np.diff(blocked[:, 0] // block))
    assert switches < len(blocked) / 8  # not interleaved comparator by comparator


def test_sort_network_fits_the_l1_budget():
    for n, dtype in [(10, np.float32), (50, np.float32), (100, np.float64), (500, np.float32)]:
        buf = group_buffer(n, dtype)
        pairs = sort_network(buf)
        row_bytes = buf.shape[1] * buf.itemsize
        block = 1
        while 2 * block * row_bytes <= SORT_BLOCK_BYTES:
            block *= 2
        assert block * row_bytes <= SORT_BLOCK_BYTES
        np.testing.assert_array_equal(pairs, network(n, block))
    assert network(7) is network(7)  # cached
