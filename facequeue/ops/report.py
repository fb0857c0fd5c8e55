"""Static HTML review report, regenerated from the database every time.

`<out>/index.html`: queue state, counts, rejection reasons, one row per person (with gallery
self-test). `<out>/people/<id>_<slug>.html`: the accepted crops as a contact sheet (references
marked, distances shown) and the rejected images grouped by reason. Every picture is a small
JPEG thumbnail generated into `<out>/thumbs/` (the report never points into the data folder,
so it can be copied elsewhere); an image whose file is gone (rejected originals are deleted)
gets a placeholder with its URL. Pages and thumbnails of people no longer in the database are
removed, so a forgotten person disappears at the next build.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape

from facequeue import layout
from facequeue.config import Config
from facequeue.files import atomic_write_bytes, atomic_write_text
from facequeue.ops.queue import stale_after_s
from facequeue.store import Store

log = structlog.get_logger("facequeue.ops.report")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
THUMB_PX = 160


def default_out(cfg: Config) -> Path:
    return cfg.data_dir / "report"


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.0f}%"
    env.filters["num"] = lambda v, d=3: "" if v is None else f"{v:.{d}f}"
    env.filters["link"] = _safe_link
    return env


def _safe_link(url: str | None) -> str:
    """Only web and file URLs become links (a search result could carry `javascript:`)."""
    u = (url or "").strip()
    return u if u.lower().startswith(("http://", "https://", "file://")) else "#"


def make_thumb(src: Path, dest: Path, px: int = THUMB_PX) -> bool:
    """A small JPEG of src at dest (atomic), reused while newer than src. False if unreadable."""
    from PIL import Image, ImageOps

    try:
        if dest.is_file() and dest.stat().st_mtime_ns >= src.stat().st_mtime_ns:
            return True
        with Image.open(src) as opened:
            opened.draft("RGB", (px * 2, px * 2))  # JPEG: decode at a reduced scale
            im: Image.Image = ImageOps.exif_transpose(opened)
            if im.mode not in ("RGB", "L"):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba)
            im = im.convert("RGB")
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80, optimize=True)
        atomic_write_bytes(dest, buf.getvalue())
        return True
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt files are expected here
        log.debug("report_thumb_failed", src=str(src), error=f"{type(exc).__name__}: {exc}")
        return False


@dataclass
class Tile:
    image_id: int
    thumb: str | None  # relative to the page, None -> placeholder
    url: str
    caption: str
    reference: bool = False
    distance: float | None = None
    detail: str | None = None
    source: str = ""  # which file the thumbnail shows: crop, face, original


def _page_name(person: dict) -> str:
    return f"{person['person_id']}_{person['slug']}.html"


def _tile(cfg: Config, img: dict, out: Path, made: set[Path], prefer: tuple[str, ...]) -> Tile:
    thumb, source = None, ""
    for key in prefer:
        rel = img.get(key)
        if not rel:
            continue
        src = layout.absolute(cfg, rel)
        if not src.is_file():
            continue
        dest = out / "thumbs" / f"{img['id']}_{key.split('_')[0]}.jpg"
        if make_thumb(src, dest):
            made.add(dest)
            thumb, source = f"../thumbs/{dest.name}", key.split("_")[0]
            break
    caption = f"#{img['rank']}"
    if img.get("distance") is not None:
        caption += f" · d={img['distance']:.3f}"
    return Tile(
        img["id"],
        thumb,
        img.get("final_url") or img["url"],
        caption,
        bool(img.get("is_reference")),
        img.get("distance"),
        img.get("detail"),
        source,
    )


def _person_context(
    cfg: Config, person: dict, images: list[dict], out: Path, made: set[Path]
) -> dict:
    accepted = [
        _tile(cfg, i, out, made, ("crop_path", "gallery_path", "face_path", "raw_path"))
        for i in images
        if i["state"] == "accepted"
    ]
    accepted.sort(key=lambda t: (not t.reference, t.distance if t.distance is not None else 9))
    rejected: OrderedDict[str, list[Tile]] = OrderedDict()
    for i in sorted(
        (i for i in images if i["state"] == "rejected"),
        key=lambda i: (i["reason"] or "", i["rank"]),
    ):
        rejected.setdefault(i["reason"] or "unknown", []).append(
            _tile(cfg, i, out, made, ("face_path", "crop_path", "raw_path"))
        )
    rejected = OrderedDict(sorted(rejected.items(), key=lambda kv: -len(kv[1])))
    pending = [i for i in images if i["state"] not in ("accepted", "rejected")]
    return {
        "person": person,
        "accepted": accepted,
        "rejected": rejected,
        "pending": pending,
        "in_gallery": person.get("gallery_folder") is not None,
    }


def _render_all(
    cfg: Config, out: Path, people: list[dict], images: dict[int, list[dict]], summary: dict
) -> Path:
    env = _env()
    made: set[Path] = set()
    pages: set[Path] = set()
    person_tpl = env.get_template("person.html.j2")
    for person in people:
        person["page"] = f"people/{_page_name(person)}"
        ctx = _person_context(cfg, person, images[person["person_id"]], out, made)
        cover = next((t.thumb for t in ctx["accepted"] if t.thumb), None)
        person["cover"] = cover[3:] if cover else None  # relative to index.html
        page = out / person["page"]
        atomic_write_text(page, person_tpl.render(**ctx, generated=summary["generated"]))
        pages.add(page)
    index = out / "index.html"
    atomic_write_text(index, env.get_template("index.html.j2").render(people=people, **summary))
    # what this build did not produce belongs to people who are gone: remove it
    for sub, keep in (("people", pages), ("thumbs", made)):
        folder = out / sub
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and path not in keep:
                    path.unlink(missing_ok=True)
    return index


async def build_report(cfg: Config, store: Store, out_dir: Path | None = None) -> Path:
    """Write the whole report from the database; returns the path of index.html."""
    out = Path(out_dir) if out_dir else default_out(cfg)
    # the templates read plain dicts (and pages add keys): records become dicts here
    people = [asdict(r) for r in await store.report_people()]
    images = {
        p["person_id"]: [asdict(r) for r in await store.report_images(p["person_id"])]
        for p in people
    }
    totals = asdict(await store.image_totals())
    gallery = {
        "people": sum(1 for p in people if p["gallery_folder"]),
        "images": sum(p["gallery_images"] or 0 for p in people),
        "flagged": sum(1 for p in people if p["flagged"]),
    }
    summary = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data_dir": str(cfg.data_dir),
        "queue": await store.queue_summary(),
        "daemons": [asdict(d) for d in await store.live_daemons(stale_after_s(cfg))],
        "totals": totals,
        "reasons": [asdict(r) for r in await store.reject_reasons()],
        "gallery": gallery,
    }
    index = await asyncio.to_thread(_render_all, cfg, out, people, images, summary)
    log.info("report_written", path=str(index), people=len(people))
    return index


async def rebuild_if_present(cfg: Config, store: Store, out_dir: Path | None = None) -> Path | None:
    """Rebuild the report if one was built before (e.g. after `forget`)."""
    out = Path(out_dir) if out_dir else default_out(cfg)
    if (out / "index.html").is_file():
        return await build_report(cfg, store, out)
    return None
