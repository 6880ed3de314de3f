"""Collectors fetch from a source and yield records; storage/ writes them."""
