"""The dReal worker process (:func:`main`).

:class:`hybridq.smt.dreal.DrealBackend` runs dReal (whose API has no timeout) in this long-lived
child so that a query can be stopped by killing it.  It is started as ``python -I -c`` with code
that sets the caller's ``sys.path`` (after start-up, so a folder on it cannot shadow the standard
library) and calls :func:`main` -- not through :mod:`multiprocessing` -- so it never imports the
caller's ``__main__`` (library scripts need no ``__main__`` guard) and costs one interpreter start
per run, not per query, whatever threads the caller has.  ``python -m hybridq.smt.dreal_worker``
runs it too.  Protocol on stdin / the original stdout: length-prefixed pickles; a request is the
argument tuple of ``DrealBackend.check`` (with ``delta`` first), an answer ``("ok", outcome)`` or
``("error", message)``; the first message, once the imports are done, is ``("ready", None)`` (or
the import error), so a query's time limit does not include the interpreter start -- an exception inside the worker is reported as itself.  Anything dReal
prints goes to stderr.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys


def _read(f):
    head = f.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(f.read(n))


def _write(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


def main() -> None:  # pragma: no cover - runs in the child process (exercised by the glue tests)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (dReal's, ours) must not corrupt the protocol
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    try:  # the imports (the interpreter start's larger part), then ("ready", None) or the error
        from hybridq.smt.dreal import DrealBackend, _import_dreal

        _import_dreal()
    except Exception as err:  # noqa: BLE001 - reported to the parent as the error it is
        _write(out, ("error", f"{type(err).__name__}: {err}"))
        return
    _write(out, ("ready", None))
    while True:
        req = _read(inp)
        if req is None:
            return
        delta, network, perturbation, cell, prop, timeout, bounds, encoding, ibp, box = req
        try:
            backend = DrealBackend(delta, subprocess=False)
            ans = ("ok", backend.check(network, perturbation, cell, prop, timeout, bounds, encoding, ibp, box))
        except Exception as err:  # noqa: BLE001 - reported to the parent as the error it is
            ans = ("error", f"{type(err).__name__}: {err}")
        _write(out, ans)


if __name__ == "__main__":  # pragma: no cover
    main()
