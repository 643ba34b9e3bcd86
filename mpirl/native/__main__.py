import sys

from mpirl.native import main

sys.exit(main())
