import sys

from nscluster.cluster import main

sys.exit(main())
