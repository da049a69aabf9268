"""The cost of a model, measured one way for every method: counting.py (parameters, MACs),
measuring.py (latency, throughput, peak memory; the whole profile) and reporting.py (the
`profile` command's table beside the papers' figures)."""
