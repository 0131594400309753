"""Look before you pull: a registry image's layer table comes from its manifest at once."""

import nbimages
from nbimages.store import default_store


def _layer_blobs_in_store(image) -> list[str]:
    store = default_store()
    return [layer.digest for layer in image.layers if store.has_blob(layer.digest)]


def test_registry_layer_table_shows_compressed_sizes_without_downloading(busybox_in_registry):
    info = nbimages.inspect(f"docker://{busybox_in_registry}")
    layers = info.layers
    assert not info.walked
    assert list(layers.compressed_size) == [layer.size for layer in info.image.layers]
    assert layers["size"].isna().all() and str(layers["size"].dtype) == "Int64"
    assert _layer_blobs_in_store(info.image) == []
    assert "to download" in repr(info) and "to download" in info._repr_html_()


def test_registry_file_table_fetches_the_layers_and_fills_the_layer_table(busybox_in_registry):
    info = nbimages.inspect(f"docker://{busybox_in_registry}")
    files = info.files()
    assert "/bin/busybox" in set(files.path)
    assert info.walked
    assert _layer_blobs_in_store(info.image) == [layer.digest for layer in info.image.layers]
    layers = info.layers
    assert layers["size"].notna().all() and int(layers["size"].sum()) > 1_000_000


def test_a_pulled_image_is_walked_at_once(busybox_in_registry):
    image = nbimages.pull(busybox_in_registry, progress=False)
    info = nbimages.inspect(image)
    assert info.walked and int(info.layers["size"].sum()) > 1_000_000
