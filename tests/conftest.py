"""Root conftest: its folder goes on ``sys.path``, so tests can import ``_services``."""
