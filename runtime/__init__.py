"""What every component process stands on: the MQTT connection (the one user of paho-mqtt besides the
bridge's metrics reader), the bus of envelopes, settings, logs, metrics, the health file, backoff,
counters, addresses and broker URLs, and the PKI helpers (a leaf: it imports nothing of ours but the
runtime's error root, itself a leaf).

Below ``broker``, ``cloud`` and ``edge``; imports only ``schemas``.
"""
