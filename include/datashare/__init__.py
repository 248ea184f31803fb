"""bps-datashare: Boston Public Schools data shared with the City of Boston in four privacy tiers.

The package does the work on Arrow tables and files and never imports Airflow; the DAGs in
`dags/` only wire its functions together.
"""

__version__ = "0.1.0"
