"""`airflow dags test`, ending the process as soon as the command has returned.

`datashare run` (include/datashare/local_airflow.py) runs this file instead of the `airflow`
console script. Tearing down an interpreter that imported Airflow, GX, pandas and pyarrow takes
about 4 s of garbage collection after the last task (py-spy: no Python frames, GIL held), time
in which nothing happens. Exit handlers still run and every stream is flushed before `os._exit`,
so no log line or database write is lost, and the exit status is the command's own.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys


def main() -> None:
    from airflow.__main__ import main as airflow_main

    try:
        airflow_main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
