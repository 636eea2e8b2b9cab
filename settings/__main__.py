"""``python -m settings`` prints the README's table of environment variables."""

from settings import markdown_table

print(markdown_table())
