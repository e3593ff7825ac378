"""Crash-proof checkpoints: a Keras callback that commits atomically, retention, restore.

Policy (``policy``: when, what to keep) and storage (``store``: commit marker,
lock, clean-up) are separate; the bytes of each checkpoint are a ``.keras``
archive written through kerasafe's format table.
"""
