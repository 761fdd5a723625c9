"""`python -m app.cli`, the same as the `podrelay` console script."""

from app.cli import main

main()
