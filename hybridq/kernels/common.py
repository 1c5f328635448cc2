"""The project decorator, constants and the packed-network calling convention of the kernels.

Every compiled function of hybridq is declared with :func:`_jit` (explicit float64 signature,
``cache=True``, ``error_model="numpy"``, never ``fastmath``).  See :mod:`hybridq.kernels` for the
floating-point soundness argument.

Numba's on-disk cache keys a function's compiled code on its own source file only, but a kernel
inlines helpers from the sibling modules of this package: editing ``scalar.py`` would leave the
cached ``linear_pass`` stale.  :func:`_register_cache_locator` therefore keys every function of
this package on the hash of *all* the package's sources (any edit recompiles the package).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

import numpy as np
from numba import njit
from numba.core import caching

log = logging.getLogger(__name__)

U = 2.0 ** -53          # unit roundoff of float64
ETA = 5e-324            # 2^-1074, smallest subnormal
FSLACK = 16.0 * U       # relative slack for libm exp/tanh based values
INF = np.inf

RELU, IDENTITY, LEAKY, HARDTANH, SIGMOID, TANH = 0, 1, 2, 3, 4, 5
#: activation name -> kernel code
ACT_CODES = {"relu": RELU, "identity": IDENTITY, "leaky_relu": LEAKY, "hardtanh": HARDTANH,
             "sigmoid": SIGMOID, "tanh": TANH}


def _jit(sig, parallel=False, entry=False):
    """The project decorator: explicit signature, cached, numpy error model, no fastmath.

    ``entry=True`` (functions called from Python only): an :class:`_Entry` that compiles / loads
    ``sig`` on its first call, so a run loads only the entry points it uses (a small run never
    loads the parallel variants and numba's threading layer).
    Internal helpers (``entry=False``) keep ``sig`` as their declared type (``.hq_sig``) but are
    compiled only into their callers: the callers' cached code already contains them, so a new
    process loads a handful of entry points instead of every helper (cold start).  The helpers are
    only called with the float64 / int64 / bool arguments of ``sig`` (from the entry points, and
    from Python as scalars)."""
    opts = dict(cache=True, error_model="numpy", fastmath=False, parallel=parallel, nogil=True)
    if entry:
        return lambda fn: _Entry(fn, sig, opts)

    def deco(fn):
        disp = njit(**opts)(fn)
        disp.hq_sig = sig
        return disp
    return deco


#: Seconds an entry point may take to load before the compilation notice is logged.
COMPILE_NOTICE_AFTER = 1.0
_announced: list = []


class _Entry:
    """An entry point compiled for its declared signature on first use (from numba's on-disk
    cache when it is there).  A compilation that takes longer than :data:`COMPILE_NOTICE_AFTER`
    seconds is announced once on stderr (logging); ``py_func`` is the Python function."""

    def __init__(self, fn, sig, opts):
        self.py_func, self.sig, self.opts = fn, sig, opts
        self.__name__, self.__doc__, self.__wrapped__ = fn.__name__, fn.__doc__, fn
        self._disp = None
        self._lock = threading.Lock()

    def __call__(self, *args):
        disp = self._disp
        if disp is None:
            disp = self.load()
        return disp(*args)

    def load(self):
        """Compile or load the machine code now; returns the numba dispatcher."""
        with self._lock:
            if self._disp is None:
                warm = _cache_looks_warm(self.__name__)
                timer = None
                if not warm:  # loading a cached entry point takes milliseconds; compiling takes minutes
                    timer = threading.Timer(COMPILE_NOTICE_AFTER, _announce_compile)
                    timer.daemon = True
                    timer.start()
                try:
                    self._disp = njit(self.sig, **self.opts)(self.py_func)
                finally:
                    if timer is not None:
                        timer.cancel()
                if not warm:
                    _mark_cache_warm(self.__name__)
        return self._disp


def _stamp_file() -> str:
    """The marker file beside numba's cache: in the package's ``__pycache__``, or in
    ``NUMBA_CACHE_DIR`` when that is set (named after this package's folder, so that two installs
    sharing one cache folder keep separate markers)."""
    from numba.core import config

    if config.CACHE_DIR:
        tag = hashlib.sha256(_PKG_DIR.encode()).hexdigest()[:16]
        return os.path.join(config.CACHE_DIR, f"hybridq-kernels-{tag}.stamp")
    return os.path.join(_PKG_DIR, "__pycache__", "hybridq-kernels.stamp")


def _cache_lines() -> list[str]:
    try:
        with open(_stamp_file()) as f:
            lines = f.read().split()
    except OSError:
        return []
    return lines[1:] if lines and lines[0] == _stamp_hex() else []


def _cache_looks_warm(name: str) -> bool:
    """True when entry point ``name`` was compiled before from these very sources (a marker file
    beside numba's cache lists the entry points compiled under the package stamp)."""
    return name in _cache_lines()


def _mark_cache_warm(name: str) -> None:
    """Record that entry point ``name`` of these sources is in numba's cache."""
    names = sorted(set(_cache_lines()) | {name})
    try:
        with open(_stamp_file(), "w") as f:
            f.write("\n".join([_stamp_hex()] + names) + "\n")
    except OSError:  # a read-only install: the notice then relies on the timer alone
        pass


_STAMP_HEX: list = []


def _stamp_hex() -> str:
    if not _STAMP_HEX:
        _STAMP_HEX.append(_package_stamp().hex())
    return _STAMP_HEX[0]


def _announce_compile() -> None:
    """Log once per process that the kernels are being compiled (the first run after an install
    or an update of the kernels; numba caches the machine code afterwards)."""
    if not _announced:
        _announced.append(True)
        log.warning("hybridq: compiling the numba kernels (first run after install or update, about 3 minutes "
                    "on 2 cores; cached for later runs)")


# ------------------------------------------------------------------------ network arrays
# A packed network (see hybridq.bounds.PackedNetwork) is passed as the argument list NET:
#   widths (L+1,) i8, woff (L+1,) i8 offsets of layer k's block in the flat weight arrays,
#   noff (L+1,) i8 offsets of z^(k) in the concatenated neuron arrays, acts (L,) i8, hasD (L,) i8,
#   alphas (L,) f8, W0 / Wc / R (row-major (out, in) blocks), W0T / aW0T / WcT / aWcT / RT /
#   DT / aDT / RdT ((in, out) blocks: transposes, |.| of the transposes), b0 / bc / rb / db / rbd.
# Layer k (0-based): z^(k) = W_k h^(k) + b_k, h^(k+1) = act_k(z^(k)), h^(0) = x (normalized).
# Perturbed: W' in [Wc - R, Wc + R], b' in [bc - rb, bc + rb].  Difference form (against theta0):
# W' = W0 + D + d with |d| <= Rd (Rd = R + rounding error of D = fl(Wc - W0)), likewise b.
_NET_NAMES = ("widths", "woff", "noff", "acts", "hasD", "alphas", "W0", "W0T", "aW0T", "Wc", "WcT",
              "aWcT", "R", "RT", "DT", "aDT", "RdT", "b0", "bc", "rb", "db", "rbd")
_NET_SIG = "i8[::1], i8[::1], i8[::1], i8[::1], i8[::1]" + ", f8[::1]" * 17
_M = "f8[:, ::1]"
_A = "f8[:, :]"


# ------------------------------------------------------------------------ cache invalidation
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_stamp():
    """sha256 over the names and contents of every ``.py`` file of this package."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(_PKG_DIR)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(_PKG_DIR, name), "rb") as f:
                h.update(f.read())
    return h.digest()


def _register_cache_locator():
    """Put, before each of numba's cache locators, a variant that claims only this package's
    functions and stamps them with :func:`_package_stamp` instead of their own file's hash."""
    classes = getattr(getattr(caching, "CacheImpl", None), "_locator_classes", None)
    if not isinstance(classes, list):
        log.warning("numba.core.caching.CacheImpl._locator_classes not found: kernel cache entries are keyed "
                    "per file (clear hybridq/kernels/__pycache__ after editing a kernel module)")
        return
    if any(getattr(c, "_hybridq_pkg", False) for c in classes):
        return
    stamp = _package_stamp()
    new = []
    for base in classes:
        if hasattr(base, "get_source_stamp") and hasattr(base, "from_function"):
            def from_function(cls, py_func, py_file, _base=base):
                if os.path.dirname(os.path.abspath(py_file)) != _PKG_DIR:
                    return None
                return _base.from_function.__func__(cls, py_func, py_file)

            sub = type("HybridqPackage" + base.__name__, (base,),
                       {"_hybridq_pkg": True, "get_source_stamp": lambda self: stamp,
                        "from_function": classmethod(from_function)})
            new.append(sub)
        new.append(base)
    classes[:] = new


_register_cache_locator()
