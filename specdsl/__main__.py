import sys

from specdsl.cli.main import main

sys.exit(main())
