"""Open Inference Protocol v2 REST routes (the codec lives in `seawall.backends.oip`)."""

from seawall.gateway.oip.routes import OipRoutes, error_response

__all__ = ["OipRoutes", "error_response"]
