"""The core's notifiers. Each module is a general plugin on the ``ofelia`` entry-point group,
registered exactly as a third party's is, and imports only ``ofelia_hookspecs``."""
