"""gRPC API of the controller: servicers and conversions between domain data and cems.v1 (shell)."""
