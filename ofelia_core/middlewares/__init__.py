"""Ofelia's middlewares (save, ...) as plugins: each is a class the daemon
registers with the plugin manager like any third-party plugin."""
