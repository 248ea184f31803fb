# Image for the scaled-out deployment (docker-compose.yaml): Airflow 3 plus this project.
# The same hashed lock as the embedded default; the project is installed without dependencies.
FROM apache/airflow:3.3.2-python3.11

USER root
COPY requirements.txt /opt/datashare/requirements.txt
USER airflow
RUN pip install --no-cache-dir --require-hashes -r /opt/datashare/requirements.txt

COPY --chown=airflow:root pyproject.toml README.md /opt/datashare/
COPY --chown=airflow:root include /opt/datashare/include
RUN pip install --no-cache-dir --no-deps -e /opt/datashare
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
