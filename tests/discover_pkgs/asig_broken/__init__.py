"""A package whose ``signals`` module fails to import."""
