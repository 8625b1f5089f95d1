"""A DAG written in Python with Leoflow's SDK (close to Airflow's API).

Leoflow evaluates this file in a separate, time- and memory-limited process and stores the same
serialized DAG a YAML file would produce.
"""

from datetime import datetime, timedelta

from leoflow.sdk import DAG, Param, Task

with DAG(
    "python_dag",
    description="Written in Python: a context-managed DAG with >> dependencies.",
    schedule=timedelta(hours=6),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "python"],
    params={"greeting": Param("hi", type="string")},
    default_args={"image": "busybox:1.36", "retries": 1, "retry_delay": timedelta(seconds=5)},
):
    prepare = Task("prepare", command=["echo", "{{ params.greeting }} from python"])
    shards = [Task(f"shard_{i}", command=["echo", f"shard {i} of 3"]) for i in range(3)]
    merge = Task("merge", command=["echo", "merged"], trigger_rule="all_success")

    prepare >> shards >> merge
