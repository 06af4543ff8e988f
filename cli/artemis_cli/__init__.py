"""`artemis`: the Artemis client (deploy, promote, rollback, registry, trash, audit)."""

__version__ = "0.1.0"
