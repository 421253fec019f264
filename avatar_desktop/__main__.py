"""`python -m avatar_desktop` is the same as the `avatar-desktop` command."""

import sys

from avatar_desktop.cli import main

sys.exit(main())
