"""Gradient-inversion privacy audit (methods.md §9, security.md X10 / T63).

``secagg audit inversion`` rebuilds what the aggregator sees in each mode
(one client's update in plain FedAvg, one masked upload, the unmasked sum
over N clients), attacks each view with Inverting Gradients, DLG/iDLG, the
analytic template leak and a GAN-prior latent search, and scores the
reconstructions against chance baselines.

Modules: :mod:`~aggregator.audit.scenario` (data split, the federated model,
one client's update), :mod:`~aggregator.audit.views` (the three views from a
real in-memory SecAgg round), :mod:`~aggregator.audit.attacks`,
:mod:`~aggregator.audit.generator` (the GAN prior),
:mod:`~aggregator.audit.metrics`, :mod:`~aggregator.audit.report` (PNGs and
JSON) and :mod:`~aggregator.audit.inversion` (the whole run).
"""

#: The attacks, in the order they run (kept here, free of torch, for the CLI).
ATTACKS: tuple[str, ...] = ("ig", "dlg", "gan", "template")
