"""`python -m sift_graph.cli`: the `sift` command."""

import sys

from sift_graph.cli.main import main

sys.exit(main())
