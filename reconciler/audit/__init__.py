"""`reconciler audit`: answers from the access repository's git history alone.

`timeline` is the pure core (facts in, timeline out); `repository` reads those facts
from git; `person` and `app` put the two together for one command each.
"""
