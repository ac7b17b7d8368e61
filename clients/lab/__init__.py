"""The in-process lab: demo, simulate, experiment and the privacy audits.

It drives the same protocol machines as the service, with the client side's
trainers, in one process (or a local cluster of real processes for the demo).
It never imports the aggregator service; the demo starts it as a process.
"""
