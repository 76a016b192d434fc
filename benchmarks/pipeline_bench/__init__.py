"""``make bench``: the project's pipeline measured beside the original design, on one broker, in one run.

Modules: ``cli`` (flags and the order of the steps), ``stack`` (broker, models, services, processes,
RSS), ``events`` (pre-serialised events, preloading, paced producing), ``measure`` (end to end,
latency, memory), ``http_load`` (the keep-alive HTTP client), ``report`` (percentiles, ratios,
the table and the JSON).
"""
