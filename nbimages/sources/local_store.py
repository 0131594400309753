"""The store transport (`store:NAME`): images in the local nbimages store, both ways."""

from __future__ import annotations

from ..image import Image
from ..store import Store


def open_stored(store: Store, name: str, platform=None) -> Image:
    """`store:NAME` as an Image; ImageNotFound names what the store holds."""
    return store.get(name, platform)


def write_stored(store: Store, image: Image, name: str | None = None) -> str:
    """Put `image` into `store` (under `name`, if given); returns its manifest digest."""
    return store.put_image(image, name or None).digest
