"""leoflow-server: Airflow 3's public /api/v2 and the /ui API on Falcon, served by gunicorn."""
