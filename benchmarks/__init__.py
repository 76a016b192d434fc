"""Benchmarks and the soak run: tools beside the services (``make bench``, ``make soak``), installed as a package."""
