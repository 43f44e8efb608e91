"""cems controller: the OpenFlow application, its pure cores and its gRPC API."""

__version__ = "0.1.0"
