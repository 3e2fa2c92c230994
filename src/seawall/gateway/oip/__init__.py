"""Open Inference Protocol v2: REST routes and the JSON / binary tensor codec."""

from seawall.gateway.oip.codec import decode_infer_request, encode_infer_response
from seawall.gateway.oip.routes import OipRoutes, error_response

__all__ = ["OipRoutes", "decode_infer_request", "encode_infer_response", "error_response"]
