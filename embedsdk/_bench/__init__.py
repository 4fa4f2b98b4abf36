"""The benchmark behind ``embedsdk bench`` (see bench/README.md).

Modules: ``texts`` (deterministic inputs), ``ceiling`` (what a zero-overhead client could do),
``clients`` (ours and the peers), ``runner`` (timing, medians, the simulated server),
``scenarios`` (throughput, fast server), ``cache``, ``warm`` (a warm call against a bare
``SELECT``), ``memory``, ``report`` (tables, JSON), ``provenance`` (commit, machine, load),
``figures`` (the figures the docs quote, and the check of a quote), ``chart`` (PNG) and
``cli``. An optional ``adaptive`` module adds ``--scenario adaptive``.
"""
