"""Benchmarks of textstack_sdk against floors and peers; run ``python -m benchmarks``.

Every figure is reported beside a floor or a peer measured in the same run, as a
median over interleaved rounds with its spread. See ``benchmarks/README.md``.
"""
