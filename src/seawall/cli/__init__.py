"""The `seawall` command."""
