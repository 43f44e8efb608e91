"""cems-portal: web pages for customers and the operator, a gRPC client of the controller."""
