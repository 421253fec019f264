"""The frozen app's entry point (PyInstaller runs this script): the `avatar-desktop` command line.

freeze_support() comes first: the live session spawns its generator worker by running this same executable, and
in a frozen build that child must run the worker, not the command line.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from avatar_desktop.cli import main

    sys.exit(main())
