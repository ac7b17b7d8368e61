"""Gradient-inversion privacy audit (methods.md §9, security.md X10 / T63).

``secagg audit inversion`` rebuilds what the aggregator sees in each mode
(one client's update in plain FedAvg, one masked upload, the unmasked sum
over N clients), attacks each view with Inverting Gradients, DLG/iDLG, the
analytic template leak and a GAN-prior latent search, and scores the
reconstructions against chance baselines.

Modules: :mod:`~clients.lab.audit.scenario` (data split, the federated model,
one client's update), :mod:`~clients.lab.audit.views` (the three views from a
real in-memory SecAgg round), :mod:`~clients.lab.audit.attacks`,
:mod:`~clients.lab.audit.generator` (the GAN prior),
:mod:`~clients.lab.audit.metrics`, :mod:`~clients.lab.audit.report` (PNGs and
JSON) and :mod:`~clients.lab.audit.inversion` (the whole run).
"""

#: The attacks, in the order they run (kept here, free of torch, for the CLI).
ATTACKS: tuple[str, ...] = ("ig", "dlg", "gan", "template")
