"""Running the pipeline's real processes on one machine: for `make up`, the benchmarks and the tests.

Not imported by any service. ``processes`` starts, waits for and stops programs by pid; ``harness`` holds
what the fault tests and the soak share (services on free ports, a paced producer, a collector, the tally).
"""
