"""Pure domain: the DAG model, states, schedules and records. No I/O and no clock reads here."""
