"""Service layer: plain functions over a Backend; no HTTP here."""
