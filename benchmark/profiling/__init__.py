"""The cost of a model: parameters, MACs, latency and memory."""
