"""The ``certmail`` command line (Click). One module per command group."""
