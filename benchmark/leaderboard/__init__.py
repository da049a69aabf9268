"""The leaderboard, a pure function of the result files (no torch, no plugin imported):

frame.py      result files -> validated, de-duplicated frame rows (validate.py: the rules)
aggregate.py  rows of a dataset/split -> mean/std per method row, labelled and ranked
figures.py    rows -> the figures to draw (draw.py draws them with matplotlib)
page.py       rows -> the markdown page (markdown.py: escaping, numbers, tables)
command.py    write or check the page; migrate.py rewrites older result files once
"""

from benchmark.leaderboard.command import leaderboard_command
from benchmark.leaderboard.migrate import migrate_command
from benchmark.leaderboard.page import render

__all__ = ["leaderboard_command", "migrate_command", "render"]
