"""APO prompt training for an Agno math agent, with full observability."""

import os

# Both libraries read these at import time, so they are set before anything imports them:
# litellm (pulled in by Agent Lightning) would fetch its cost map from the internet, and agno
# phones home after every agent run unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["AGNO_TELEMETRY"] = "false"

__version__ = "0.1.0"
