"""The right to be forgotten: deletion requests, resolved through the identity graph and applied to
every layer, exports and reports.

The names below are the layer's API; the modules hold the rest."""

from crm360.privacy.erasure import apply_erasures
from crm360.privacy.requests import IDENTIFIER_TYPES, INSTEAD, ErasureError, record_request, request_erasure

__all__ = ["IDENTIFIER_TYPES", "INSTEAD", "ErasureError", "apply_erasures", "record_request", "request_erasure"]
