"""Paper plugins that ship with the harness; each registers through the same entry points
a third-party package would use."""
