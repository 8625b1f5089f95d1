"""DAG files to domain objects: YAML and Python loading, validation, import errors, git sync, versions.

``loader`` finds and parses files (``yamlfile`` + ``build`` for YAML, ``pyloader``/``pyrunner`` for
Python in a sandboxed subprocess), ``gitsource`` fetches bundles, ``sync`` records versions and
import errors in the store (``leoflow.store.repos.dags``).
"""
