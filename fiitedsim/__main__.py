"""`python -m fiitedsim ...` runs the command line."""
from .cli import main

main()
