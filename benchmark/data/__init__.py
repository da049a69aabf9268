"""Datasets that ship with the core, and the data path shared by all of them."""
