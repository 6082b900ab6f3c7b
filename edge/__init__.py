"""Edge-side components: EdgeHub, MetaManager, EdgeD, EventBus, DeviceTwin.

Each runs as its own process on the edge node's MQTT broker.
"""
