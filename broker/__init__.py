"""What serves MQTT: the embedded broker (amqtt) and its plugins, the configuration writers and
supervisor for mosquitto, the link ACL and password files, and the bridge (a node's only link to
the cloud). The only package that imports amqtt.

Stands on ``runtime``; ``cloud`` and ``edge`` never import it.
"""
