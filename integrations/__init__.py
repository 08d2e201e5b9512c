"""Vendor adapters behind small Protocols. Workflows never import this package; activities do."""
