"""`python -m engine.cli`: the `headwater` command."""
from engine.cli import main

main()
