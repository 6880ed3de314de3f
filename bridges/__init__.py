"""Bridges turn stored records into other forms (aggregates, RDF triples)."""
