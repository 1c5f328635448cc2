"""``python -m hybridq ARGS``: the ``hybridq`` command (:func:`hybridq.client.main`)."""

from hybridq.client import main

if __name__ == "__main__":  # pragma: no cover
    main()
