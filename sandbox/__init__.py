"""Sandboxes: processes isolated by Linux namespaces and limited by cgroups.

Code under this package that runs *inside* a sandbox (``runtime``, ``event``,
``frames``, the setup pipeline) imports nothing from ``gateway`` or ``invoker``.
"""
