"""The job path: nodes dial in, a slot scheduler assigns, nothing waits on a running job.

- ``node_socket``: the Channels consumer each node keeps one WebSocket open to. Jobs go
  down it; acceptance, output, progress and results come up it.
- ``scheduler``: assigns queued jobs (priority, then age) to connected nodes with a free
  slot, several per transaction, when a job arrives or a slot frees.
- ``attempts``: what a node's answer does to a job: start it, settle it, fail it over.
- ``watchdog``: the periodic sweep that enforces what a silent node would not: accept
  and run deadlines, nodes gone for good, jobs nobody took.

A running job holds no thread, actor or database connection: its state is its row,
and the next thing that happens to it arrives as a frame or is found by the sweep.
"""
