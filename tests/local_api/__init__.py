"""Tests of the local Import API server."""
