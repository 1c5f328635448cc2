"""Decision equivalence: the perturbed (or deployed) network decides like the nominal (float) one.

The property :class:`SameDecision` is relational: the nominal network's class is not fixed over
the input set, it is compared input by input.  With ``g`` the *class logits* (``y`` for the
argmax, ``-y`` for the argmin, ``[0, y]`` for a one-output binary classifier whose class is 1 iff
``y > 0``), a pair ``(x, theta)`` violates it iff, for some classes ``c != j``::

    g(y(x; theta0))_c - g(y(x; theta0))_k > kappa   for every k != c   (the nominal class is c,
                                                                         winning by more than kappa)
    g(y(x; theta))_c  - g(y(x; theta))_j  <= 0                         (the perturbed network does
                                                                         not pick c: a tie is a flip)

Inputs where no nominal class wins by more than ``kappa`` are not constrained (``kappa = 0``: a
tie of the nominal network).  DESIGN.md §1: "decision: argmax s(x; theta) == argmax s(x; theta0),
optionally only where the nominal margin is at least kappa".

Proof (:func:`decide_same_decision`), over a box ``X`` (sound: every step only drops violations
that cannot exist):

1. *Pair filter.*  One bound pass on each network with the rows ``g_c - g_k``: a class ``c`` with
   ``max_X (g f_c - g f_k) <= kappa`` for some ``k`` is never the nominal class; a pair ``(c, j)``
   with ``min_X (g q_c - g q_j) > 0`` never flips.  Then a cheap search for a counterexample
   (:func:`disagreement_candidates`: samples, and bisection for both networks' class switches
   on segments between inputs of different classes).
2. *One nominal class left* (the usual case on a small box): the perturbed network keeping ``c``
   strictly on all of ``X`` (:class:`~hybridq.properties.Decision` ``(c, 0)``) proves it.
3. *Otherwise* the product network ``P(x) = [y(x; theta0); y(x; theta)]`` (block-diagonal layers,
   the nominal branch with radius 0; :func:`product_network`) and the closed unsafe set
   ``OR_(c, j) {g f_k - g f_c <= -kappa (k != c), g q_c - g q_j <= 0,
   (g q_c - g q_j) - (g f_c - g f_j) <= -kappa}`` (the last row is the sum of two others, an
   implied row the bound pass can refute on its own): a superset of the violations, decided by the
   ordinary branch and bound as an :class:`~hybridq.properties.OutputConstraint`.

A counterexample is re-checked with :meth:`SameDecision.check_exact` (strict inequalities, exact
arithmetic) on the network that is meant: the plain network with parameters inside the box, or
(:mod:`hybridq.deployed`) the exactly rounded deployed network.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from hybridq.exact import float_down
from hybridq.network import Layer, Network, as_interval, iv_precision
from hybridq.properties import Decision, OutputConstraint, _exact_nonneg

__all__ = ["SameDecision", "product_network", "branch_params", "decide_same_decision", "verify_same_decision",
           "disagreement_candidates", "class_walks", "logit_gradient"]


@dataclass(frozen=True)
class SameDecision:
    """Decision equivalence: wherever the nominal network's class wins by more than ``kappa``, the
    perturbed network picks the same class (module docstring).

    Parameters
    ----------
    kappa : float or exact number
        Nominal margin ``>= 0`` below which an input is not constrained (default 0: only a tie of
        the nominal network is exempt).  Kept exactly in :attr:`kappa_exact`; :attr:`kappa` is the
        largest float64 not above it (the float problem then constrains more inputs: sound).
    sense : {"max", "min"} or None
        The class is the argmax or the argmin of the logits; ``None``: the network's
        :attr:`~hybridq.Network.decision_sense` (:meth:`resolve`).

    Raises
    ------
    ValueError
        Negative or non-finite kappa, unknown sense.
    """

    kappa: float = 0.0
    sense: str | None = None
    kappa_exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = _exact_nonneg(self.kappa, "kappa")
        if self.sense not in ("max", "min", None):
            raise ValueError(f"decision sense must be 'max' (argmax) or 'min' (argmin), got {self.sense!r}")
        object.__setattr__(self, "kappa_exact", exact)
        # rounded down: a smaller kappa constrains more inputs, so robust for it covers the exact one
        object.__setattr__(self, "kappa", float_down(exact, "kappa"))

    def resolve(self, network) -> "SameDecision":
        """This property with ``sense`` fixed: its own, else ``network.decision_sense``."""
        if self.sense is not None:
            return self
        return SameDecision(self.kappa_exact, getattr(network, "decision_sense", "max"))

    def _sign(self) -> float:
        return -1.0 if self.sense == "min" else 1.0

    def class_logits(self, y: np.ndarray) -> np.ndarray:
        """``g(y)`` for a batch ``(m, n_out)``: ``(m, n_out)``, or ``(m, 2)`` for one output."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if y.shape[1] == 1:
            if self.sense == "min":
                raise ValueError("decision sense 'min' (argmin) needs a network with at least two outputs")
            return np.concatenate([np.zeros_like(y), y], axis=1)
        return self._sign() * y

    def class_matrix(self, n_out: int) -> np.ndarray:
        """``G (n_cls, n_out)`` with ``g(y) = G y`` (``n_cls = 2`` for one output)."""
        if n_out == 1:
            self.class_logits(np.zeros((1, 1)))  # the sense check
            return np.array([[0.0], [1.0]])
        return self._sign() * np.eye(n_out)

    def margin(self, network, y_pert: np.ndarray, y_nom: np.ndarray) -> np.ndarray:
        """Float64 violation margin per row, ``>= 0`` violates (attacks only, never a proof):
        ``min(nominal margin of the nominal class - kappa, -(perturbed margin of that class))``."""
        p = self.resolve(network)
        gn, gp = p.class_logits(y_nom), p.class_logits(y_pert)
        rows = np.arange(gn.shape[0])
        c = np.argmax(gn, axis=1)
        others_n, others_p = gn.copy(), gp.copy()
        others_n[rows, c] = -np.inf
        others_p[rows, c] = -np.inf
        mf = gn[rows, c] - np.max(others_n, axis=1)
        mq = gp[rows, c] - np.max(others_p, axis=1)
        return np.minimum(mf - p.kappa, -mq)

    def check_exact(self, network, x, params) -> bool:
        """True iff ``(x, params)`` violates the property in exact arithmetic (strict nominal
        margin ``> kappa_exact``, perturbed tie = flip).

        ``network`` is anything whose ``exact_logits(x, None)`` gives the nominal logits and
        ``exact_logits(x, params)`` the perturbed ones (a :class:`~hybridq.Network`, or
        :meth:`hybridq.actquant.ActModel.rounded_view` for the rounded deployed network).  Logits
        that are ``mpmath`` intervals (sigmoid / tanh) decide only where the intervals do.
        """
        p = self.resolve(network)
        yn, yp = network.exact_logits(x, None), network.exact_logits(x, params)
        gn, gp = _exact_class_logits(p, yn), _exact_class_logits(p, yp)
        k = self.kappa_exact
        for c in range(len(gn)):
            if not all(_certainly_greater(gn[c] - gn[j], k) for j in range(len(gn)) if j != c):
                continue
            return any(_certainly_le(gp[c] - gp[j], 0) for j in range(len(gp)) if j != c)
        return False

    def constraint(self, n_out: int, pairs) -> OutputConstraint:
        """The closed unsafe set of :func:`product_network`'s outputs ``[y_nom; y_pert]`` (module
        docstring, step 3) for the ordered class pairs ``pairs``."""
        G = self.class_matrix(n_out)
        n_cls = G.shape[0]
        Z = np.zeros((1, n_out))
        kap = self.kappa_exact
        disjuncts = []
        for c, j in pairs:
            rows, rhs = [], []
            for k in range(n_cls):
                if k != c:  # g f_k - g f_c <= -kappa
                    rows.append(np.concatenate([G[k] - G[c], Z[0]]))
                    rhs.append(-kap)
            rows.append(np.concatenate([Z[0], G[c] - G[j]]))  # g q_c - g q_j <= 0
            rhs.append(Fraction(0))
            rows.append(np.concatenate([-(G[c] - G[j]), G[c] - G[j]]))  # implied: (q_c - q_j) - (f_c - f_j) <= -kappa
            rhs.append(-kap)
            disjuncts.append((np.array(rows), np.array(rhs, dtype=object)))
        return OutputConstraint(tuple(disjuncts))


def _exact_class_logits(p: SameDecision, y: list) -> list:
    if len(y) == 1:
        return [Fraction(0), y[0]]
    return [-v for v in y] if p.sense == "min" else list(y)


def _certainly_greater(v, k: Fraction) -> bool:
    if isinstance(v, Fraction):
        return v > k
    with iv_precision():
        return bool(as_interval(v).a > as_interval(k).b)


def _certainly_le(v, k) -> bool:
    if isinstance(v, Fraction):
        return v <= k
    import mpmath  # here, not at the top: only sigmoid / tanh values need it (start-up)

    with iv_precision():
        return bool(as_interval(v).b <= mpmath.iv.mpf(k).a)


# ------------------------------------------------------------------------- product network
def product_network(network: Network, center, radius, name: str = "product", pre_clip=None) -> tuple[Network, object]:
    """``P(x) = [y(x; theta0); y(x; theta)]``: the nominal and the perturbed network side by side.

    Layer ``k`` of ``P`` is ``blockdiag(W0_k, W_k)`` (the first layer ``[W0_1; W_1]``, both reading
    ``x``), same activation; the perturbation has radius 0 on the nominal block and ``radius`` on
    the other, centre ``theta0`` / ``center``.  The outputs are the logits of both (identity
    output transform), so ``2 n_out`` of them.

    Parameters
    ----------
    network : Network
        The nominal network (``theta0 = network.params``).
    center, radius : Params
        The perturbed parameters' box, shapes of ``network``.
    pre_clip : (lo, hi) or None
        The perturbed network's known pre-activation bounds (:attr:`Perturbation.pre_clip`): kept
        on the perturbed block (the nominal block gets none).

    Returns
    -------
    (Network, Perturbation)
    """
    from hybridq.perturbation import Perturbation

    layers, cen, rad = [], [], []
    for k, (l, (W, b), (RW, rb)) in enumerate(zip(network.layers, center, radius)):
        W0, b0 = np.asarray(l.W, dtype=np.float64), np.asarray(l.b, dtype=np.float64)
        W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
        RW, rb = np.asarray(RW, dtype=np.float64), np.asarray(rb, dtype=np.float64)
        if k == 0:
            P0, PW, PR = np.vstack([W0, W0]), np.vstack([W0, W]), np.vstack([np.zeros_like(RW), RW])
        else:
            P0, PW, PR = _blockdiag(W0, W0), _blockdiag(W0, W), _blockdiag(np.zeros_like(RW), RW)
        layers.append(Layer(P0, np.concatenate([b0, b0]), l.activation, l.alpha))
        cen.append((PW, np.concatenate([b0, b])))
        rad.append((PR, np.concatenate([np.zeros_like(rb), rb])))
    P = Network(tuple(layers), "identity", network.input_mean, network.input_std, network.input_lower,
                network.input_upper, np.concatenate([network.output_mean] * 2),
                np.concatenate([network.output_std] * 2), name, network.decision_sense)
    clip = None
    if pre_clip is not None:
        offs = np.concatenate([[0], np.cumsum([l.n_out for l in network.layers])])
        clip = tuple(np.concatenate([a for k in range(len(network.layers)) for a in
                                     (np.full(offs[k + 1] - offs[k], fill), np.asarray(c)[offs[k]:offs[k + 1]])])
                     for c, fill in zip(pre_clip, (-np.inf, np.inf)))
    return P, Perturbation(tuple(cen), tuple(rad), "product (nominal radius 0)", pre_clip=clip)


def _blockdiag(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    out = np.zeros((A.shape[0] + B.shape[0], A.shape[1] + B.shape[1]))
    out[:A.shape[0], :A.shape[1]] = A
    out[A.shape[0]:, A.shape[1]:] = B
    return out


def branch_params(network: Network, params) -> tuple:
    """The perturbed branch's parameters from parameters of :func:`product_network`'s network."""
    out = []
    for k, (l, (W, b)) in enumerate(zip(network.layers, params)):
        W, b = np.asarray(W), np.asarray(b)
        out.append((W[l.n_out:, :] if k == 0 else W[l.n_out:, l.n_in:], b[l.n_out:]))
    return tuple(out)


# ------------------------------------------------------------------------------ search
def logit_gradient(network: Network, x: np.ndarray, row: np.ndarray, params=None) -> np.ndarray:
    """Gradient in ``x`` of ``row . y(x; params)`` (one input ``(n_in,)``; relu-like and smooth
    activations; the input clamp is ignored).  For steering searches, not for proofs."""
    from hybridq.network import activate, activation_slope

    p = network.params if params is None else params
    h = network.normalize(np.asarray(x, dtype=np.float64)[None])[0]
    masks = []
    for l, (W, b) in zip(network.layers, p):
        z = np.asarray(W) @ h + b
        m = activation_slope(z, l.activation, l.alpha)
        masks.append(m)
        h = activate(z, l.activation, l.alpha)
    v = np.asarray(row, dtype=np.float64) * network.output_std
    for (W, _), m in zip(reversed(p), reversed(masks)):
        v = np.asarray(W).T @ (v * m)
    return v / network.input_std


def class_walks(network: Network, prop: SameDecision, box, steps: int = 16) -> list[np.ndarray]:
    """For every class ``c``: signed-gradient steps from the box centre that raise ``g_c`` over the
    best other class of ``network`` (inputs of as many nominal classes as the box holds, the ends
    of the segments :func:`disagreement_candidates` bisects)."""
    G = prop.class_matrix(network.n_out)
    lo, hi = box.lower, box.upper
    width = 2 * (hi - lo) / steps
    out = []
    for c in range(G.shape[0]):
        x = box.center.copy()
        for t in range(steps):
            g = G @ network.forward(x[None])[0]
            g[c] = -np.inf
            k = int(np.argmax(g))
            x = np.clip(x + width * 0.9**t * np.sign(logit_gradient(network, x, G[c] - G[k])), lo, hi)
        out.append(x)
    return out


def disagreement_candidates(f_nom, f_pert, prop: SameDecision, box, extra=(), rng=None, samples: int = 256,
                            pairs: int = 12, steps: int = 48) -> list[np.ndarray]:
    """Inputs of ``box`` where the two networks may decide differently (float64, not a proof).

    Candidates: ``extra`` (e.g. :func:`class_walks`), the centre, both corners and ``samples``
    uniform points, ranked by
    ``prop.margin``; then, for up to ``pairs`` segments between sampled points whose nominal (or
    perturbed) classes differ, bisection for the switch points ``t_f`` (nominal) and ``t_q``
    (perturbed) and the segment's points between them: a decision boundary of one network that
    the other does not share gives a violation just next to it.

    Parameters
    ----------
    f_nom, f_pert : callable (m, n_in) -> (m, n_out)
        Float64 logits of the nominal and the perturbed (or simulated rounded) network.

    Returns
    -------
    list of (n_in,) float64, best first (at most ``len(extra) + 3 + samples + 3 pairs``)
    """
    rng = np.random.default_rng(0) if rng is None else rng
    lo, hi = box.lower, box.upper
    X = np.concatenate([np.asarray(e, dtype=np.float64).reshape(1, -1) for e in extra] +
                       [box.center[None], lo[None], hi[None], rng.uniform(lo, hi, (samples, lo.size))])

    def classes(X, f):
        return np.argmax(prop.class_logits(f(X)), axis=1)

    m = prop.margin(None, f_pert(X), f_nom(X))
    order = list(np.argsort(-m, kind="stable"))
    out = [X[i] for i in order if m[i] >= 0]
    cf, cq = classes(X, f_nom), classes(X, f_pert)
    seen = 0
    for i in order:
        if seen >= pairs:
            break
        diff = np.flatnonzero((cf != cf[i]) | (cq != cq[i]))
        if diff.size == 0:
            continue
        jx = int(diff[np.argmin(np.max(np.abs(X[diff] - X[i]), axis=1))])
        a, b = X[i], X[jx]
        ts = []
        for f, ci in ((f_nom, cf[i]), (f_pert, cq[i])):
            t0, t1 = 0.0, 1.0
            if classes((a + (b - a))[None], f)[0] == ci:
                ts.append(None)
                continue
            for _ in range(steps):
                t = 0.5 * (t0 + t1)
                if classes((a + t * (b - a))[None], f)[0] == ci:
                    t0 = t
                else:
                    t1 = t
            ts.append((t0, t1))
        seen += 1
        cand = []
        for t in ts:
            if t is not None:
                cand += [a + t[0] * (b - a), a + t[1] * (b - a)]
        if ts[0] is not None and ts[1] is not None:
            cand.append(a + 0.5 * (ts[0][1] + ts[1][0]) * (b - a))
        cand = [np.clip(c, lo, hi) for c in cand]
        if cand:
            C = np.array(cand)
            mc = prop.margin(None, f_pert(C), f_nom(C))
            out += [C[k] for k in np.argsort(-mc, kind="stable")]
    return out


# ---------------------------------------------------------------------------------- decide
def _total(options: dict, config) -> float | None:
    """The run's budget in seconds: its own timeout, else the config's (``None``: unlimited)."""
    total = options.get("timeout")
    if total is None and config is not None:
        total = getattr(config, "timeout", None)
    return None if total is None else float(total)


def _budget(options: dict, config, t0: float, reserve: float = 0.0) -> dict:
    """``options`` with the timeout left after ``t0`` less ``reserve`` seconds (kept for the exact
    re-check of what the stage finds)."""
    total = _total(options, config)
    if total is None:
        return dict(options)
    return {**options, "timeout": max(total - (time.perf_counter() - t0) - reserve, 0.01)}


def _pair_filter(prop: SameDecision, f_net, f_pert, q_net, q_pert, box, method: str = "linear"):
    """The ordered pairs ``(c, j)`` that bounds cannot exclude (module docstring, step 1)."""
    from hybridq.bounds import bounds

    n_out = f_net.n_out
    G = prop.class_matrix(n_out)
    n = G.shape[0]
    idx = [(c, k) for c in range(n) for k in range(n) if c != k]
    C = np.array([G[c] - G[k] for c, k in idx])
    obf = bounds(f_net, f_pert, box, method=method, spec=C)
    obq = bounds(q_net, q_pert, box, method=method, spec=C)
    fhi = dict(zip(idx, obf.spec_hi[0]))
    qlo = dict(zip(idx, obq.spec_lo[0]))
    kap = prop.kappa_exact
    possible = [c for c in range(n) if all(Fraction(float(fhi[c, k])) > kap for k in range(n) if k != c)]
    return [(c, j) for c in possible for j in range(n) if j != c and not qlo[c, j] > 0.0]


#: The first round of step 2 (the perturbed network alone) and of step 3 (the product network) as
#: multiples of the pair filter's time (one bound pass of each network): measured on mnistfc
#: 256x4 int8 prop_0_0.03 (load 5): pair filter 9.9 s, the product network's root cell 32.5 s
#: (3.3x).  A stage whose estimate does not fit in the time left is not started.
ROOT_COST = (1.0, 4.0)


def decide_same_decision(prop: SameDecision, nominal: Network, q_net: Network, q_pert, box, confirm, *,
                         extra_candidates=None, config=None, progress=None, **options):
    """Decide :class:`SameDecision` for the perturbed network ``(q_net, q_pert)`` against the nominal
    network (the building block of :func:`verify_same_decision` and of :mod:`hybridq.deployed`).

    Parameters
    ----------
    prop : SameDecision
        Sense resolved.
    nominal : Network
        The nominal network ``f`` (radius 0).
    q_net, q_pert : Network, Perturbation
        A network whose nominal parameters compute ``f`` on ``box`` (for a deployed model: the
        noise-layer network of :meth:`hybridq.actquant.ActModel.expand`) and the box of the
        perturbed parameters around it.
    box : InputBox
    confirm : callable (x, params of q_net or None) -> Counterexample or None
        The exact re-check of a candidate input (and the perturbed parameters found with it).
    extra_candidates : callable (list of x) -> list of x, optional
        More inputs to try (e.g. a search on the really rounded network).
    config, progress, options
        As for :func:`hybridq.verify`; the timeout covers all stages and the re-checks: a stage's
        budget keeps back the longest re-check so far and one bound pass (about the round a stage
        finishes past its deadline), a stage whose first round (estimated by :data:`ROOT_COST`)
        does not fit is not started, and candidates are re-checked only while one more fits (the
        first of a batch always is: a run's overrun is at most one re-check and that round).

    Returns
    -------
    Result
        ``robust``, ``not_robust`` (the counterexample ``confirm`` returned) or ``unknown``.
    """
    from hybridq.bab import verify
    from hybridq.perturbation import Perturbation
    from hybridq.result import Result, Stats

    from hybridq.bounds import load_kernels

    t0 = time.perf_counter()
    load_kernels(q_net)  # loading the kernels counts against the budget (as in hybridq.bab's run)
    zero = Perturbation(nominal.params, tuple((np.zeros_like(W), np.zeros_like(b)) for W, b in nominal.params), "none")
    t_pairs = time.perf_counter()
    pairs = _pair_filter(prop, nominal, zero, q_net, q_pert, box)
    t_pairs = time.perf_counter() - t_pairs
    t_pass = t_pairs / 2  # one bound pass: about a round past a deadline
    stats = Stats(cells=1)

    def done(verdict, cx=None, msg=""):
        stats.time["total"] = time.perf_counter() - t0
        return Result(verdict, prop, cx, float("nan"), stats, None, msg)

    if not pairs:
        stats.proved_bounds = 1
        return done("robust")
    stats.open = 1  # the root cell goes on to the search below; replaced by the stages' own counts

    total = _total(options, config)
    slowest = [0.0]  # the longest exact re-check so far (seconds)

    def left() -> float:
        return float("inf") if total is None else t0 + total - time.perf_counter()

    def try_inputs(xs, params):
        """The first 24 candidates, while one more re-check fits the budget (the first always runs:
        a call's overrun is at most one re-check)."""
        for tried, x in enumerate(xs):
            if tried >= 24 or (tried > 0 and left() < slowest[0]):
                break
            t = time.perf_counter()
            cx = confirm(x, params)
            slowest[0] = max(slowest[0], time.perf_counter() - t)
            if cx is not None:
                return cx
        return None

    classes = sorted({c for c, _ in pairs})
    msgs = []
    stages = []
    if extra_candidates is not None:  # a cheap search first: boundaries of the two networks that differ
        found = try_inputs(extra_candidates([]), None)
        if found is not None:
            stats.open, stats.refuted = 0, 1
            return done("not_robust", found)
    def no_room(stage: str, factor: float):
        """A stage's first round (its root cell's bound pass and attack) cannot be interrupted: when
        its estimate, ``factor`` times the pair filter's two passes, does not fit in what is left,
        the stage is not started (budgets are kept)."""
        est = factor * t_pairs
        if total is None or left() - slowest[0] - t_pass >= est:
            return None
        stats.timed_out = True
        return _merged(done("unknown", msg="; ".join(msgs + [
            f"timeout: {stage}'s first bound pass (about {est:.1f} s) does not fit in the {max(left(), 0):.1f} s left"])),
            stages, "unknown")

    if len(classes) == 1:  # step 2: the perturbed network keeps the one possible nominal class
        if (out := no_room("the deployed network", ROOT_COST[0])) is not None:
            return out
        c = classes[0]
        dec = Decision(c, 0, prop.sense if nominal.n_out > 1 else "max")  # one output: label 1 iff y > 0
        r = verify(q_net, q_pert, box, dec, config=config, progress=progress,
                   **_budget(options, config, t0, slowest[0] + t_pass))
        stages.append(r.stats)
        if r.verdict == "robust":
            stats.open = 0
            return _merged(done("robust"), stages, "robust")
        if r.verdict == "not_robust":
            cx = r.counterexample
            xs = [cx.x] + (extra_candidates([cx.x]) if extra_candidates else [])
            found = try_inputs(xs, cx.params)
            if found is not None:
                return _merged(done("not_robust", found), stages, "not_robust")
            msgs.append(f"the perturbed network leaves class {c} where the nominal network does not decide {c} "
                        "by more than kappa (or only in the noise model)")
        else:
            return _merged(done("unknown", msg=r.message), stages, "unknown")
    # step 3: the product network and the relational unsafe set
    if (out := no_room("the product network", ROOT_COST[1])) is not None:
        return out
    P, PP = product_network(q_net, q_pert.center, q_pert.radius, pre_clip=getattr(q_pert, "pre_clip", None))
    con = prop.constraint(nominal.n_out, pairs)
    opts = _budget(options, config, t0, slowest[0] + t_pass)
    if opts.get("timeout", 1.0) <= 0.05:
        return _merged(done("unknown", msg="; ".join(msgs + ["timeout"])), stages, "unknown")
    r = verify(P, PP, box, con, config=config, progress=progress, **opts)
    stages.append(r.stats)
    if r.verdict == "robust":
        return _merged(done("robust"), stages, "robust")
    if r.verdict == "not_robust":
        cx = r.counterexample
        params = branch_params(q_net, cx.params)
        xs = [cx.x] + (extra_candidates([cx.x]) if extra_candidates else [])
        found = try_inputs(xs, params)
        if found is not None:
            return _merged(done("not_robust", found), stages, "not_robust")
        msgs.append("the noise model admits a violation but the exactly re-checked network decides like the "
                    "nominal one at the inputs found")
    elif r.message:
        msgs.append(r.message)
    return _merged(done("unknown", msg="; ".join(msgs)), stages, "unknown")


def _merged(res, stages, verdict):
    """``res`` with the counts of the stage that decided (the last one), so that they add up to
    ``verdict`` (a refutation that the exact re-check did not confirm counts as open); the time is
    the whole run's."""
    if not stages:
        return res
    s = copy.deepcopy(stages[-1])
    if verdict != "not_robust" and s.refuted:
        s.open += s.refuted
        s.refuted = 0
    if verdict == "not_robust" and s.refuted == 0:
        s.refuted, s.open = 1, max(s.open - 1, 0)
    s.time["total"] = res.stats.time["total"]
    res.stats = s
    return res


def verify_same_decision(network: Network, perturbation, inputs, prop: SameDecision | None = None, *,
                         config=None, progress=None, **options):
    """Prove or refute decision equivalence of the perturbed network (every parameter set in
    ``perturbation``) and the nominal one on ``inputs`` (module docstring).

    Parameters
    ----------
    network : Network
    perturbation : Perturbation or str
    inputs : InputBox, point or (lower, upper)
    prop : SameDecision, optional
        Default ``SameDecision()`` (kappa 0, the network's sense).
    config, progress, options
        As for :func:`hybridq.verify` (``timeout``, ``jobs``, ...).

    Returns
    -------
    Result
        ``not_robust`` carries ``(x, params)``, params inside the box, re-checked exactly.
    """
    from hybridq.inputs import as_input_box
    from hybridq.perturbation import perturbation as make_perturbation
    from hybridq.result import Counterexample

    pert = make_perturbation(perturbation, network) if isinstance(perturbation, str) else perturbation
    box = as_input_box(inputs, network.n_in)
    prop = (prop or SameDecision()).resolve(network)

    def confirm(x, params):
        xe = box.snap(np.asarray(x, dtype=np.float64))
        p = pert.center if params is None else pert.snap_inside(params)
        if not pert.contains(p) or not prop.check_exact(network, xe, p):
            return None
        xf = np.array([float(v) for v in xe])
        m = float(prop.margin(network, network.forward(xf[None], p), network.forward(xf[None]))[0])
        x_exact = tuple(Fraction(v) for v in xe) if any(Fraction(float(v)) != v for v in xe) else None
        return Counterexample(xf, p, m if m > 0 else 0.0, None, kind="", x_exact=x_exact)

    def more(xs):
        xs = list(xs) + (class_walks(network, prop, box) if network.is_piecewise_linear else [])
        return disagreement_candidates(network.forward, lambda X: network.forward(X, pert.center), prop, box, xs)

    return decide_same_decision(prop, network, network, pert, box, confirm, extra_candidates=more, config=config,
                                progress=progress, **options)
