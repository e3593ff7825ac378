"""The tutorials' system as a product: train -> save -> load -> predict, preprocessing bundled.

Built on the library (``kerasafe.save``/``load`` and the manifest); the command
line's ``train``, ``predict`` and ``evaluate`` are thin shells over it.
"""
