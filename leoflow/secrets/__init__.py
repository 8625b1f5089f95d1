"""Vault integration: logging in, identity tokens, KV secrets, masking, operator bootstrap (issue 8).

Modules (one job each): ``vault`` (an hvac client that never reads ambient credentials),
``login`` (AppRole / token-file sessions kept renewed), ``bootstrap`` (operator setup),
``airflow`` (Airflow's connection URI and env names), ``backend`` (connections and variables from
Vault KV v2 with the store as fallback), ``delivery`` (the declared secrets of one try),
``masking`` (secret values out of task logs), ``pki`` (agent certificates), ``session_key``
(the UI session signing key shared by every server replica).
"""
