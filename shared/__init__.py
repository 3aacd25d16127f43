"""What the three Giao services share: settings, event models, Kafka and PostgreSQL plumbing.

Services import from here and never from each other.
"""
