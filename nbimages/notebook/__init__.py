"""The notebook skin: the %image magics, rich display helpers and widgets.

The only part of nbimages that imports IPython and ipywidgets; everything here is a thin layer
over the public API (`import nbimages`).
"""
