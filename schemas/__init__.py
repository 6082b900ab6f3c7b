"""Wire formats shared by every edgehive process: the envelope, resource keys, topics, twin JSON.

Defined once here so that no component can drift from another's idea of a message.
"""
