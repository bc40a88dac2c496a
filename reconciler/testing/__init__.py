"""Servers and data for tests and `reconciler demo`: real protocols on 127.0.0.1.

Lives in the package (not under tests/) because the demo starts the same servers.
Optional dependencies are imported only when a server is started.
"""
