"""reconciler: find and remove leavers' accounts, reviewed by people, audited by git."""

__version__ = "0.1.0"
