"""What other apps may hear about jobs without the jobs importing them.

`job_progressed` is sent after the transaction that stored a job's events commits, when they
include a validation metric or a final status (webapp/jobs/events.py append_events, the one
writer of events, so every end — finish, cancel, the watchdog — sends it). Receivers get
`job_id` and `final` (True when the job has ended) and must not raise: they run in whichever
process stored the events (a worker's reporter thread, a web request).
"""

from __future__ import annotations

from django.dispatch import Signal

job_progressed = Signal()
