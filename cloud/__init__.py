"""Cloud-side components: CloudHub, EdgeController, DeviceController.

The only place that talks to the Kubernetes API server.
"""
