"""Open Inference Protocol v2: the wire codec (shared by the gateway and the remote backend) and
`OipBackend`, a model on a remote OIP v2 server."""

from seawall.backends.oip.backend import OipBackend
from seawall.backends.oip.codec import (
    EncodedRequest,
    EncodedResponse,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)

__all__ = [
    "EncodedRequest",
    "EncodedResponse",
    "OipBackend",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
]
