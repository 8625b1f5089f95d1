"""The scheduler: a leader-elected, event-driven loop over the pure planner (adr/0030, adr/0031).

``loop.Scheduler`` is one wake-up (read, plan, fenced write, act); ``service.SchedulerService``
adds leader election, the watches and executor events that wake it, and a clean stop;
``signals`` holds the store keys other processes use to find and wake it.
"""
