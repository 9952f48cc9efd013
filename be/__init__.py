"""Bookstore backend: service layer (be.model), HTTP adapter (be.api), engine (be.db)."""
