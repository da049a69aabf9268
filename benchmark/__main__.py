"""Entry point for ``python -m benchmark``."""

from benchmark.cli import main

raise SystemExit(main())
