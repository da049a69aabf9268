"""Training a method: loop.py (the epoch loop), step.py (one step: its loss, precision and
optimizer step), optim.py (optimizer and schedule), selection.py (validation R@1 and the
best epoch's weights) and restore.py (what a checkpoint holds, and resuming from it)."""
