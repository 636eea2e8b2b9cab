"""The `tailor` command, the composition root: the only package that may import both ``training`` and ``service``."""
