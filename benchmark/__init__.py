"""A plugin-based benchmark harness for cross-view geo-localization (CVGL)."""

__version__ = "0.1.0"
