"""Raw downloads of a person, deleted once curation (or `forget`) no longer needs them.

The same bytes can be a search result of two people (content dedup points both rows at one
file): a file another person still uses stays.
"""

from __future__ import annotations

from collections.abc import Iterable

from facequeue import layout
from facequeue.config import Config
from facequeue.store import Image, Store


async def delete_originals(
    cfg: Config, store: Store, person_id: int, images: Iterable[Image]
) -> None:
    """Rows first (no row may point at a missing file), then the files nobody else uses."""
    with_raw = [i for i in images if i.raw_path]
    if not with_raw:
        return
    await store.forget_raw_paths([i.id for i in with_raw])
    for img in with_raw:
        assert img.raw_path is not None
        if await store.other_users_of_raw(img.raw_path, person_id) == 0:
            layout.absolute(cfg, img.raw_path).unlink(missing_ok=True)
