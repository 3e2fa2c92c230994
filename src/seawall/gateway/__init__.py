"""The HTTP layer: ASGI app, OIP v2 routes, error → status table, metrics, server."""

from seawall.gateway.app import Gateway
from seawall.gateway.metrics import GatewayMetrics

__all__ = ["Gateway", "GatewayMetrics"]
