"""The bus: the embedded MQTT broker, the client wrapper and the bridge.

The only package that imports paho-mqtt or amqtt, so that the transport can be
swapped or tested without touching a component.
"""
