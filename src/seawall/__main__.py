"""`python -m seawall`: the same as the `seawall` command."""

from seawall.cli.main import main

main()
