import sys

from marketplace.sdk.cli import main

sys.exit(main())
