"""App wiring: the factory, logging, request observation and the gunicorn runner."""
