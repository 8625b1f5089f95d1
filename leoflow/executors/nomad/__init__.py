"""The Nomad executor: every task try is a Nomad batch job (see ``executor.py`` for its life).

Modules: ``jobspec`` (pure job JSON), ``status`` (pure allocation -> outcome), ``client`` (the
python-nomad transport), ``feed`` (event stream / blocking queries), ``logs`` (log copy),
``preflight`` (can Nomad's Vault template deliver what a try declares), ``executor`` (the port
implementation).
"""

from leoflow.executors.nomad.client import NomadClient, NomadError, Settings
from leoflow.executors.nomad.executor import NomadExecutor, ReconcileResult
from leoflow.executors.nomad.jobspec import JobSettings, JobSpecError, build_job, job_id_for

__all__ = ["JobSettings", "JobSpecError", "NomadClient", "NomadError", "NomadExecutor", "ReconcileResult",
           "Settings", "build_job", "job_id_for"]
