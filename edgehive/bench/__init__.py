"""``edgehive bench``: edgehive measured against a baseline from the same run, one scenario per module.

Scenarios: link, edge, cloud, twin, stack, footprint, scale (``scale_*``; with NATS and replicas ``scale_ha*``
and ``capacity``), workloads, stream (``streambench``), and all of them (``all``); their command line is in
``cli``. What they share is public: ``harness`` (errors, processes, waits, MQTT watchers, percentiles),
``procfs`` (reading /proc), ``system`` (a whole system of brokers, podman and components). ``bench scale``'s
simulated nodes are ``simnode`` (one node's logic), ``simulator`` (the process that runs them) and ``mqtt311``
(its MQTT client's codec). This package imports none of them: a scenario is loaded only when it runs.
"""
