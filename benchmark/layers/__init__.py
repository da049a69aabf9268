"""Aggregation and attention layers that any method plugin may import."""

from benchmark.layers.attention import BAM, CBAM, TripletAttention
from benchmark.layers.netvlad import NetVLAD

__all__ = ["BAM", "CBAM", "NetVLAD", "TripletAttention"]
