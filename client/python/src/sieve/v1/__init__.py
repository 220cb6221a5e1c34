"""Generated from proto/sieve/v1 by client/python/generate.py; do not edit."""
