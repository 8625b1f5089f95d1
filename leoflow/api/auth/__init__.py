"""Authentication and authorization of leoflow-server: password hashing (``passwords``), JWTs
(``tokens``), the role ladder (``roles``), login throttling (``ratelimit``) and the login/logout/
token endpoints the Airflow UI calls (``endpoints``)."""
