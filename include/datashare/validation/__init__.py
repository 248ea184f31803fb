"""Data contracts: Great Expectations suites over the canonical staging model."""

import logging
import os

# GX phones home unless told not to; and it logs ~150 INFO lines about its own docs registry
# when imported into an already-configured logging setup (Airflow's). Neither helps operators.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
logging.getLogger("great_expectations").setLevel(logging.WARNING)
