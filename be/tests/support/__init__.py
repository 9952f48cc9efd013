"""Test-only helpers, kept out of the product package (pyproject.toml does not
ship be.tests): ``querycheck``, a model of MongoDB's query planner with a
recorder of the query shapes the code issues, and ``faults``, a database
wrapper that crashes at the k-th write. The model tests (be/tests) and the REST
tests (fe/test) import them from here."""
