"""The formats: media types, descriptors, manifests, indexes, configs, layouts and tars.

No I/O policy lives here beyond reading and writing the formats themselves.
"""
