"""Emailing app owners after a check (DESIGN §8).

`events` decides, as a pure function of data, who gets which email; `message` writes
it; `smtp` sends it; `record` remembers what was sent; `owners` runs them in that order
for `reconciler check`.
"""
