"""One frozen config object: facequeue.toml + FACEQUEUE_<SECTION>__<KEY> overrides.

Secrets (API keys) are read from the environment only and never appear in repr or logs.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from facequeue.errors import ConfigError

CONFIG_ENV = "FACEQUEUE_CONFIG"
DEFAULT_CONFIG_NAME = "facequeue.toml"


DAY_S = 86_400.0


class Section(BaseModel):
    # inf/nan would pass every bound (a lease of inf seconds is NULL in SQLite): refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class QueueConfig(Section):
    people_in_flight: int = Field(2, ge=1, le=64)
    lease_s: float = Field(300.0, gt=0, le=DAY_S)
    heartbeat_s: float = Field(30.0, gt=0, le=DAY_S)
    max_attempts: int = Field(5, ge=1, le=100)
    backoff_base_s: float = Field(30.0, ge=0, le=DAY_S)
    backoff_max_s: float = Field(3600.0, ge=0, le=30 * DAY_S)
    poll_s: float = Field(5.0, gt=0, le=3600)
    grace_s: float = Field(30.0, ge=0, le=3600)
    # Below this much free space on data_dir's disk the daemon claims nobody new (0: off).
    min_free_mb: float = Field(200.0, ge=0, le=10_000_000)

    @field_validator("heartbeat_s")
    @classmethod
    def _heartbeat_well_below_lease(cls, value: float, info: ValidationInfo) -> float:
        lease = info.data.get("lease_s")
        if lease is not None and value > lease / 3:
            raise ValueError(
                f"must be at most a third of queue.lease_s ({lease:g} s) so a live daemon "
                "renews its leases in time"
            )
        return value


class SearchConfig(Section):
    provider: Literal["wikimedia", "rapidapi", "folder"] = "wikimedia"
    max_results: int = Field(70, ge=1, le=1000)
    query_template: str = "{name} {occupation}"
    retries: int = Field(2, ge=0, le=10)  # provider HTTP retries on 429/5xx/network errors
    retry_backoff_s: float = Field(1.0, ge=0)  # first retry delay, doubled each time, with jitter


class RapidApiConfig(Section):
    base_url: str = "https://real-time-image-search.p.rapidapi.com"
    host: str = "real-time-image-search.p.rapidapi.com"
    limit: int = Field(100, ge=1, le=100)
    size: str = "1024x768_and_more"
    type: str = "face"
    region: str = "us"
    timeout_s: float = Field(30.0, gt=0)


class WikimediaConfig(Section):
    api_url: str = "https://commons.wikimedia.org/w/api.php"
    thumb_width: int = Field(1280, ge=0)  # also ask for a thumbnail this wide (0: none)
    timeout_s: float = Field(30.0, gt=0)


class FolderConfig(Section):
    root: str = "./photos"


class DownloadConfig(Section):
    concurrency: int = Field(128, ge=1, le=1024)  # bench/download.py: 16 hosts x 8 saturate 2 cores
    per_host: int = Field(8, ge=1, le=256)
    allow_private_addresses: bool = False
    allowed_networks: list[str] = []  # CIDRs exempt from the private-address guard
    min_image_side: int = Field(100, ge=1)
    max_bytes: int = Field(30_000_000, ge=1024)
    max_pixels: int = Field(50_000_000, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(20.0, gt=0)
    total_timeout_s: float = Field(60.0, gt=0)
    deadline_s: float = Field(180.0, gt=0)  # one whole fetch: retries, redirects, robots.txt
    retries: int = Field(3, ge=0, le=20)
    retry_backoff_s: float = Field(0.5, ge=0)
    retry_after_max_s: float = Field(60.0, ge=0)
    max_redirects: int = Field(5, ge=0, le=30)
    honor_x_robots_tag: bool = True
    x_robots_block: list[str] = ["noai", "noimageai"]
    honor_robots_txt: bool = True

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network in CIDR form (10.0.0.0/8)") from None
        return value


class AnalysisConfig(Section):
    workers: int = Field(2, ge=1, le=64)
    detector: str = "dlib"
    model: str = "Dlib"
    max_side: int = Field(1024, ge=128)
    min_face_px: int = Field(70, ge=1)
    extra_face_fraction: float = Field(0.5, gt=0, le=1)
    extra_face_min_confidence: float = Field(0.15, ge=0)  # weaker extra detections are ignored
    blur_min: float = Field(8.0, ge=0)  # Laplacian variance of the aligned 150 px grey chip
    align: bool = True
    allow_weight_download: bool = False
    deepface_home: str = ""  # empty = <data_dir>/deepface


class CurationConfig(Section):
    max_per_person: int = Field(40, ge=1)
    min_references: int = Field(3, ge=1)
    max_references: int = Field(7, ge=1)
    threshold: float | None = Field(None, gt=0)
    metric: Literal["", "cosine", "euclidean", "euclidean_l2"] = (
        ""  # "" = euclidean for Dlib, else cosine
    )
    ambiguity_ratio: float = Field(0.8, gt=0, le=1)  # a rival group this large -> no_consensus
    spread_factor: float = Field(1.3, gt=0)  # accept within this x the references' own spread...
    spread_floor: float = Field(0.75, gt=0, le=1)  # ...but never stricter than this x threshold
    phash_distance: int = Field(6, ge=0, le=64)
    duplicate_distance: float = Field(0.08, ge=0)
    crop_margin: float = Field(0.2, ge=0, le=2)
    keep_originals: bool = False


class GalleryConfig(Section):
    min_images: int = Field(5, ge=1)
    threshold: float | None = Field(None, gt=0)


class NamesConfig(Section):
    occupations: list[str] = ["actor", "politician", "athlete", "musician"]
    count: int = Field(20, ge=1, le=200)
    source: Literal["llm", "wikidata"] = "llm"  # default of `add-country --source`


class LlmConfig(Section):
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    retry_backoff_s: float = Field(1.0, ge=0)  # first retry delay, doubled each time, with jitter
    concurrency: int = Field(4, ge=1, le=64)  # occupations asked at once


class WikidataConfig(Section):
    sparql_url: str = "https://query.wikidata.org/sparql"
    cross_check: bool = True
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)  # 429/5xx/malformed answers; a timeout: once
    retry_backoff_s: float = Field(2.0, ge=0)  # first retry delay, doubled each time, with jitter


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_upload_mb: float = Field(20.0, gt=0)
    max_pixels: int = Field(50_000_000, ge=1)  # a bigger (or bomb) upload gets a 413
    max_concurrent: int = Field(2, ge=1, le=64)  # recognitions at once (= worker processes)
    queue_wait_s: float = Field(10.0, ge=0)  # the rest wait this long for a slot, then 503
    gallery_poll_s: float = Field(1.0, gt=0)  # the gallery's version is read at most this often


class Secrets:
    """API keys, read from the environment only."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.rapidapi_key = SecretStr(env.get("RAPIDAPI_KEY", ""))
        self.openai_api_key = SecretStr(env.get("OPENAI_API_KEY", ""))
        self.api_token = SecretStr(env.get("FACEQUEUE_API_TOKEN", ""))

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"


_TOML_DATA: dict[str, Any] = {}


class _TomlSource(PydanticBaseSettingsSource):
    """Values from the already-parsed TOML file (lowest priority after env)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return _TOML_DATA.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_TOML_DATA)


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEQUEUE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    data_dir: Path = Path("./data")
    # Empty: SQLite at <data_dir>/facequeue.db. postgresql://user@host:port/db: the shared
    # PostgreSQL queue of many daemons on many hosts (password only from the environment).
    database_url: str = ""
    log_file: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    user_agent: str = (
        "facequeue/0.1 (face dataset collector; https://github.com/facequeue/facequeue)"
    )

    queue: QueueConfig = QueueConfig()
    search: SearchConfig = SearchConfig()
    rapidapi: RapidApiConfig = RapidApiConfig()
    wikimedia: WikimediaConfig = WikimediaConfig()
    folder: FolderConfig = FolderConfig()
    download: DownloadConfig = DownloadConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    curation: CurationConfig = CurationConfig()
    gallery: GalleryConfig = GalleryConfig()
    names: NamesConfig = NamesConfig()
    llm: LlmConfig = LlmConfig()
    wikidata: WikidataConfig = WikidataConfig()
    serve: ServeConfig = ServeConfig()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        if value and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("expected empty (SQLite) or postgresql://user@host:port/db")
        return value

    @property
    def database_label(self) -> str:
        """Where the database is, for messages (never with a password)."""
        if not self.database_url:
            return str(self.db_path)
        parts = urlsplit(self.database_url)
        if parts.password is None:
            return self.database_url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()

    # Paths derived from data_dir: one place decides the layout on disk.
    @property
    def db_path(self) -> Path:
        return self.data_dir / "facequeue.db"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def faces_dir(self) -> Path:
        return self.data_dir / "faces"

    @property
    def gallery_dir(self) -> Path:
        return self.data_dir / "gallery"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def secrets(self) -> Secrets:
        return Secrets()


def find_config_path(explicit: str | os.PathLike | None) -> Path | None:
    """--config, else $FACEQUEUE_CONFIG, else ./facequeue.toml if it exists."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from ${CONFIG_ENV})")
        return path
    path = Path(DEFAULT_CONFIG_NAME)
    return path if path.is_file() else None


def _resolve(base: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _describe(err: ErrorDetails) -> str:
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    got = err.get("input")
    if isinstance(got, (str, int, float, bool)) and err["type"] != "missing":
        return f"{key}: {msg} (got {got!r})"
    return f"{key}: {msg}"


def _refuse_password_in_file(cfg_path: Path | None, data: dict[str, Any]) -> None:
    """A config file is readable by more people than a secret should be."""
    url = data.get("database_url")
    if isinstance(url, str) and url.strip():
        try:
            password = urlsplit(url.strip()).password
        except ValueError:
            password = None
        if password is not None:
            raise ConfigError(
                f"{cfg_path}: database_url must not contain a password: set it in "
                "FACEQUEUE_DATABASE_URL, PGPASSWORD or ~/.pgpass instead"
            )


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Load and validate the config. Raises ConfigError with a line per bad key."""
    global _TOML_DATA
    cfg_path = find_config_path(path)
    data: dict[str, Any] = {}
    if cfg_path is not None:
        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{cfg_path}: cannot read: {exc.strerror}") from None
    _refuse_password_in_file(cfg_path, data)
    base = (cfg_path.parent if cfg_path else Path.cwd()).resolve()
    _TOML_DATA = data
    try:
        cfg = Config(**overrides)
    except ValidationError as exc:
        where = f"{cfg_path}" if cfg_path else "config"
        lines = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{where}: {lines}") from None
    finally:
        _TOML_DATA = {}
    updates: dict[str, Any] = {"data_dir": _resolve(base, cfg.data_dir)}
    if cfg.log_file:
        updates["log_file"] = str(_resolve(base, cfg.log_file))
    folder = cfg.folder.model_copy(update={"root": str(_resolve(base, cfg.folder.root))})
    updates["folder"] = folder
    return cfg.model_copy(update=updates)
