"""Run the fiitedsim command line from a checkout: `python cli.py replay ...` (same as `fiitedsim ...`)."""
from fiitedsim.cli import main

if __name__ == "__main__":
    main()
