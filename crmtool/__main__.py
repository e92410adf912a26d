"""``python -m crmtool`` from the source tree."""

from crmtool.cli import main

main()
