"""Documents generated from the code (`python -m tools.docs.configuration`)."""
