"""The benchmark behind ``embedsdk bench`` (see bench/README.md).

Modules: ``texts`` (deterministic inputs), ``ceiling`` (what a zero-overhead client could do),
``clients`` (ours and the peers), ``runner`` (timing, medians, the simulated server),
``scenarios`` (throughput, fast server), ``cache``, ``memory``, ``report`` (tables, JSON),
``chart`` (PNG) and ``cli``. An optional ``adaptive`` module adds ``--scenario adaptive``.
"""
