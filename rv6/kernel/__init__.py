"""Rv6's kernel as pure layers (no processes, no I/O): errors, the process table,
the open-file and descriptor tables, pipes, the console buffer and path resolution.
The kernel domain (rv6/kernel_domain.py) is the thin shell that drives them."""
