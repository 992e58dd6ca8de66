import sys

from crm360.cli import main

sys.exit(main())
