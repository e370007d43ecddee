"""The canary report inside Airflow's UI: a FastAPI app the api-server mounts at ``/canary-releases``.

- ``svg``: plots drawn as SVG text, pure (no Airflow import);
- ``charts``: which plots a run gets, from the gates' per-look records (pure);
- ``pages``: the index and run pages as HTML, every value escaped (pure);
- ``data``: what a page shows, read from Airflow's database in the api-server process;
- ``app``: the routes, behind the api-server's own authentication and DAG permissions.
"""
