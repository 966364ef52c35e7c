"""``python -m rait`` (e.g. under ``torchrun --nproc_per_node N -m rait influence ...``)."""

import sys

from rait.cli import main

sys.exit(main())
