"""Every numba kernel of the bound pass (DESIGN.md §3), outward rounded.

All compiled code of hybridq lives in this package, behind one decorator (:func:`common._jit`): explicit float64
signatures, ``cache=True``, ``error_model="numpy"``, never ``fastmath``.  Kernels take contiguous
arrays and scalars, never raise and never touch Python objects; :mod:`hybridq.bounds` validates
every argument first.

Floating-point soundness
------------------------
Every returned bound encloses the exact real value.  Three devices are used:

* single operations are rounded outward with ``nextafter`` (:func:`up`, :func:`dn`): for a
  round-to-nearest result ``v = fl(a op b)`` the exact value lies in ``[dn(v), up(v)]``;
* a dot product (or matrix product: ``np.dot`` -> BLAS, any summation order, with or without FMA) of
  length ``n`` is off by at most ``gamma_n * sum_i |a_i||b_i| + n*eta`` with
  ``gamma_n = n u / (1 - n u)``, ``u = 2^-53`` and ``eta = 2^-1074`` for underflow
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1 eq. (3.4)-(3.5) and §2.1
  for underflow); :func:`gam` returns ``gamma_{n+2}`` rounded up, a margin for the few extra
  operations that follow;
* libm ``exp`` / ``tanh`` are not correctly rounded: sigmoid / tanh values and derivatives get 16
  ulps of relative slack plus ``eta`` (glibc documents <= 2 ulps for these functions).

Linear relaxations (CROWN-style) choose their slopes heuristically but compute every intercept
rigorously as an outward-rounded bound of ``max (f(z) - s z)`` (upper line) or ``min`` (lower line)
over ``[l, u]``: at the break points for piecewise-linear ``f``; for sigmoid / tanh (convex on
``z <= 0``, concave on ``z >= 0``) at the endpoints of the part where ``f - s z`` is convex (max) /
concave (min), and by the tangent inequality with an enclosure of the derivative on the other part.
So a slope that is off by rounding costs tightness, never soundness.

Back-substitution keeps, per objective row, a float constant and a non-negative *slack* that
bounds every rounding error so far (coefficient products and matrix products times the largest
magnitude of the variable they multiply); the final upper bound is ``up(const + slack + ...)``.

Modules
-------
``common``   the decorator, constants, activation codes, the packed-network calling convention;
``scalar``   outward rounding (``up``, ``dn``, ``gam``), activation enclosures, relaxations;
``interval`` methods ``interval`` / ``diff`` (``interval_pass``);
``output``   sigmoid / softmax score enclosures;
``linear``   method ``linear`` (back-substitution, ``linear_pass``).
"""

from __future__ import annotations

from hybridq.kernels.common import (_NET_NAMES, _NET_SIG, ACT_CODES, ETA, FSLACK, HARDTANH, IDENTITY, INF, LEAKY,
                                    RELU, SIGMOID, TANH, U, _jit)
from hybridq.kernels.interval import interval_pass, interval_pass_serial
from hybridq.kernels.linear import linear_pass, linear_pass_serial
from hybridq.kernels.output import score_sigmoid, score_softmax
from hybridq.kernels.scalar import dn, dprime_range, f_hi, f_lo, gam, relax, sig_fwd, up

__all__ = ["ACT_CODES", "interval_pass", "interval_pass_serial", "linear_pass", "linear_pass_serial", "score_sigmoid",
           "score_softmax", "relax", "f_lo", "f_hi", "dprime_range", "sig_fwd"]
