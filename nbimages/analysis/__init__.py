"""Layer analysis: `inspect(source)` walks an image's layers once and answers as DataFrames.

See inspection.py for the tables, walk.py for the single pass over the layer tars and
dive.py for the dive-compatible efficiency numbers.
"""

from .inspection import Inspection, inspect

__all__ = ["Inspection", "inspect"]
