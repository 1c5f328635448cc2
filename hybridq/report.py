"""The JSON result document: one self-describing layout for ``verify``, ``quantify`` and ``bounds``.

Every document has the same top level (the JSON Schema is ``hybridq/schema/result.schema.json``,
every field is described there and in the README)::

    {"format": "hybridq-result", "format_version": 1, "command": "verify" | "quantify" | "bounds",
     "problem":  {"network": {...}, "perturbation": {...}, "against": {...} | null,
                  "input_set": {...}, "property": {...} | null},
     "settings": {"backend", "seed", "timeout", "jobs"},
     "versions": {"hybridq", "python", "numpy", "numba", "z3"},
     "result":   {...the command's result...}}

``problem`` records what was asked (the network file with its SHA-256, the perturbation spec, the
input boxes, the property with all its parameters), so a result file can be re-run and checked
without the command line that produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "SCHEMA_PATH", "document", "describe_problem", "property_dict",
           "file_info", "versions", "settings_dict", "explain_counterexample", "write_json"]

FORMAT = "hybridq-result"
FORMAT_VERSION = 1
#: The JSON Schema (draft 2020-12) of the documents written by :func:`write_json`.
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "result.schema.json"


def file_info(path) -> dict | None:
    """``{"path": absolute path, "sha256": hex digest of the file's bytes}`` (None for None)."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(p.resolve()), "sha256": h.hexdigest()}


def versions() -> dict:
    """Versions of hybridq and of the libraries its answers depend on (from the installed
    distributions' metadata; nothing is imported)."""
    out = {"python": platform.python_version()}
    for key, dist in (("hybridq", "hybridq"), ("numpy", "numpy"), ("numba", "numba"), ("z3", "z3-solver")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def property_dict(prop, network=None) -> dict | None:
    """The property with every parameter: ``kind`` (``deviation``, ``decision``,
    ``output_constraint``) and ``outputs``, ``label``, ``sense``, ``kappa``, ``delta``, ``space``
    where they apply (a decision's ``sense`` left to the network is taken from ``network`` when
    given); an output constraint lists its disjuncts ``A y <= c`` (the unsafe set)."""
    if prop is None:
        return None
    name = type(prop).__name__
    if name == "Deviation":
        return {"kind": "deviation", "delta": float(prop.delta), "delta_exact": _exact_text(prop, "delta"),
                "space": prop.space, "outputs": None if prop.outputs is None else [int(j) for j in prop.outputs]}
    if name == "Decision":
        return {"kind": "decision", "label": int(prop.label), "kappa": float(prop.kappa),
                "kappa_exact": _exact_text(prop, "kappa"),
                "sense": getattr(prop, "sense", None) or getattr(network, "decision_sense", None)}
    if name == "SameDecision":
        return {"kind": "same_decision", "kappa": float(prop.kappa), "kappa_exact": _exact_text(prop, "kappa"),
                "sense": getattr(prop, "sense", None) or getattr(network, "decision_sense", None)}
    if name == "OutputConstraint":
        return {"kind": "output_constraint",
                "disjuncts": [{"A": np.asarray(A).tolist(), "c": np.asarray(c).tolist()} for A, c in prop.disjuncts]}
    return {"kind": name}


def _exact_text(obj, name: str) -> str:
    """The exact value of ``obj.<name>_exact`` as ``'p/q'`` text (``obj.<name>`` when absent)."""
    from fractions import Fraction

    v = getattr(obj, name + "_exact", None)
    return str(v if v is not None else Fraction(float(getattr(obj, name))))


def _decimal(obj, name: str) -> str:
    """``obj.<name>`` as written: the exact value as a decimal when it has one, else ``p/q``."""
    from fractions import Fraction

    v = getattr(obj, name + "_exact", None)
    q = v if v is not None else Fraction(float(getattr(obj, name)))
    d, k = q.denominator, 0
    for f in (2, 5):
        while d % f == 0:
            d //= f
    if d != 1:
        return str(q)
    while (q * 10 ** k).denominator != 1:
        k += 1
    digits = str(abs(q.numerator * 10 ** k // q.denominator)).rjust(k + 1, "0")
    text = digits[:len(digits) - k] + ("." + digits[len(digits) - k:] if k else "")
    return ("-" if q < 0 else "") + text


def settings_dict(config) -> dict:
    """The run settings a result depends on (``timeout`` in seconds, ``None``: unlimited)."""
    if config is None:
        return {"backend": None, "seed": None, "timeout": None, "jobs": None}
    return {"backend": config.backend, "seed": int(config.seed),
            "timeout": None if config.timeout is None else float(config.timeout), "jobs": int(config.jobs)}


def _box_dict(box) -> dict:
    lo, hi = np.asarray(box.lower, dtype=np.float64), np.asarray(box.upper, dtype=np.float64)
    kind = "point" if np.array_equal(lo, hi) else "box"
    d = {"kind": kind, "lower": lo.tolist(), "upper": hi.tolist()}
    if getattr(box, "_exact", None) is not None:  # ends given as decimals that are no float64: as written
        d["lower_exact"] = [str(q) for q in box.exact_lower]
        d["upper_exact"] = [str(q) for q in box.exact_upper]
    return d


def describe_problem(network=None, perturbation=None, boxes=(), prop=None, *, network_path=None,
                     vnnlib=None, against=None) -> dict:
    """The ``problem`` section: what was asked.

    Parameters
    ----------
    network : Network, optional
        Its ``name``, input and output counts are recorded.
    perturbation : Perturbation or str or None
        Its spec string is recorded (``Perturbation.spec``).
    boxes : sequence of InputBox
        The input boxes (several for a VNNLIB disjunction), raw input space.
    prop : Deviation | Decision | OutputConstraint or None
    network_path, vnnlib, against : path, optional
        Files whose absolute path and SHA-256 are recorded.
    """
    net = {"name": getattr(network, "name", None), "path": None, "sha256": None,
           "n_inputs": None if network is None else int(network.n_in),
           "n_outputs": None if network is None else int(network.n_out)}
    if network_path is not None:
        net.update(file_info(network_path))
    spec = perturbation if isinstance(perturbation, str) or perturbation is None else getattr(perturbation, "spec", None)
    return {
        "network": net,
        "perturbation": None if spec is None else {"spec": spec},
        "against": file_info(against),
        "input_set": {"vnnlib": file_info(vnnlib), "boxes": [_box_dict(b) for b in boxes]},
        "property": property_dict(prop, network),
    }


def explain_counterexample(network, prop, x, params) -> dict:
    """Float64 outputs at a counterexample and the constraint it violates.

    Returns ``{"outputs_nominal": y(x; theta0), "outputs_perturbed": y(x; theta), "violated": text}``
    (logits, ``(n_out,)`` lists).  The verdict rests on the exact re-check, not on these floats.
    """
    with np.errstate(all="ignore"):  # huge parameters may overflow float64: inf is reported as null
        return _explain(network, prop, x, params)


def _explain(network, prop, x, params) -> dict:
    y0 = network.forward(np.asarray(x, dtype=np.float64))
    y1 = network.forward(np.asarray(x, dtype=np.float64), params)
    y0, y1 = np.asarray(y0).reshape(-1), np.asarray(y1).reshape(-1)
    name = type(prop).__name__
    if name == "Deviation":
        if prop.space == "score":
            a, b = (np.asarray(network.scores(np.asarray(x, dtype=np.float64), p)).reshape(-1) for p in (params, None))
        else:
            a, b = y1, y0
        sel = list(prop.selected(network.n_out))
        j = sel[int(np.argmax(np.abs(a[sel] - b[sel])))]
        s = "s" if prop.space == "score" else "y"
        text = f"|{s}_{j}(x; theta) - {s}_{j}(x; theta0)| <= {_decimal(prop, 'delta')}"
    elif name == "Decision":
        C = prop.spec_matrix(network.n_out)
        r = int(np.argmin(C @ y1))
        text = f"{_linear_text(C[r])} > {_decimal(prop, 'kappa')}"
    elif name == "SameDecision":
        p = prop.resolve(network)
        c, k = int(np.argmax(p.class_logits(y0)[0])), int(np.argmax(p.class_logits(y1)[0]))
        text = f"the perturbed network's class ({k}, a tie counts as a flip) is the nominal class {c}"
    elif name == "OutputConstraint":
        d = int(np.argmax([np.min(c - A @ y1) for A, c in prop.disjuncts]))
        A, c = prop.disjuncts[d]
        text = "unsafe set reached: " + " and ".join(f"{_linear_text(row)} <= {float(v)!r}" for row, v in zip(A, c))
    else:
        text = ""
    return {"outputs_nominal": y0.tolist(), "outputs_perturbed": y1.tolist(), "violated": text}


def _linear_text(row) -> str:
    terms = []
    for j, a in enumerate(np.asarray(row, dtype=np.float64)):
        if a == 0.0:
            continue
        mag = "" if abs(a) == 1.0 else f"{abs(a)!r}*"
        terms.append(("- " if a < 0 else "+ ") + f"{mag}y_{j}")
    text = " ".join(terms) or "0"
    return text[2:] if text.startswith("+ ") else "-" + text[2:] if text.startswith("- ") else text


def document(command: str, result: dict, problem: dict | None = None, settings: dict | None = None) -> dict:
    """The full document (see the module docstring); ``result`` is the command's result section,
    ``settings`` a :func:`settings_dict`."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "command": command,
            "problem": problem if problem is not None else describe_problem(),
            "settings": settings if settings is not None else settings_dict(None), "versions": versions(),
            "result": result}


def write_json(path, doc: dict) -> None:
    """Write a document as JSON (non-finite floats become ``null``; numpy values plain numbers)."""
    Path(path).write_text(json.dumps(_clean(doc), indent=2, allow_nan=False))


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (bool, int, str)) or o is None:
        return o
    return str(o)
