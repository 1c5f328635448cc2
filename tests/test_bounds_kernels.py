"""The kernel package: public names, serial == parallel entry points, cache keyed on the package."""

from __future__ import annotations

import numpy as np
import pytest

from hybridq import Layer, Network, Perturbation
from hybridq import kernels as K
from hybridq.bounds import bounds
from hybridq.kernels import common


def _net(rng, acts, widths):
    layers = [Layer(rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]),
                    rng.normal(size=widths[i + 1]) * 0.3, a, alpha=0.1) for i, a in enumerate(acts)]
    return Network(layers, "identity")


def test_public_kernel_names_importable():
    for name in K.__all__ + ["_NET_NAMES", "up", "dn", "gam"]:
        assert hasattr(K, name), name
    assert K._NET_NAMES[0] == "widths" and len(K._NET_NAMES) == 22
    assert K.ACT_CODES["relu"] == 0 and K.ACT_CODES["tanh"] == 5
    assert K.up(1.0) > 1.0 and K.dn(1.0) < 1.0


@pytest.mark.parametrize("acts", [("relu", "relu", "identity"), ("tanh", "sigmoid", "identity")])
def test_linear_serial_equals_parallel(acts):
    # >= 4 cells run linear_pass (prange), 1 cell runs linear_pass_serial: one body (_linear_cell)
    rng = np.random.default_rng(3)
    net = _net(rng, acts, [3, 6, 5, 2])
    pert = Perturbation(net.params, tuple((np.full(W.shape, 1e-3), np.full(b.shape, 1e-3)) for W, b in net.params))
    lo = rng.uniform(-1.0, 0.5, (5, 3))
    hi = lo + rng.uniform(0.01, 0.3, (5, 3))
    batch = bounds(net, pert, (lo, hi), method="linear")
    for c in range(5):
        one = bounds(net, pert, (lo[c:c + 1], hi[c:c + 1]), method="linear")
        for f in ("logit_lo", "logit_hi", "dev_logit_lo", "dev_logit_hi"):
            assert np.array_equal(getattr(batch, f)[c], getattr(one, f)[0]), (c, f)
        assert np.all(batch.logit_lo[c] <= batch.logit_hi[c])


def test_interval_serial_and_parallel_agree_per_block():
    # block=1: one row per block, parallel entry point for n > 1 and serial for n == 1: same rows
    rng = np.random.default_rng(4)
    net = _net(rng, ("relu", "relu", "identity"), [3, 6, 5, 2])
    pert = Perturbation(net.params, tuple((np.full(W.shape, 1e-3), np.full(b.shape, 1e-3)) for W, b in net.params))
    lo = rng.uniform(-1.0, 0.5, (4, 3))
    hi = lo + 0.1
    for method in ("interval", "diff"):
        batch = bounds(net, pert, (lo, hi), method=method, block=1)
        for c in range(4):
            one = bounds(net, pert, (lo[c:c + 1], hi[c:c + 1]), method=method, block=1)
            assert np.array_equal(batch.logit_lo[c], one.logit_lo[0])
            assert np.array_equal(batch.dev_logit_hi[c], one.dev_logit_hi[0])


def test_cache_locator_claims_only_the_package():
    from numba.core import caching
    ours = [c for c in caching.CacheImpl._locator_classes if getattr(c, "_hybridq_pkg", False)]
    assert ours, "package cache locator not registered"
    # every numba locator gets a package variant placed right before it
    names = [c.__name__ for c in caching.CacheImpl._locator_classes]
    assert names.index("HybridqPackageInTreeCacheLocator") + 1 == names.index("InTreeCacheLocator")
    assert len(common._package_stamp()) == 32

    def outside(x):
        return x

    assert all(c.from_function(outside, __file__) is None for c in ours)
    loc = next(c for c in ours if c.__name__ == "HybridqPackageInTreeCacheLocator")
    inside = loc.from_function(K.linear_pass.py_func, K.linear_pass.py_func.__code__.co_filename)
    assert inside is not None and inside.get_source_stamp() == common._package_stamp()
