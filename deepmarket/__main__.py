import sys

from deepmarket.cli import main

sys.exit(main())
