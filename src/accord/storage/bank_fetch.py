"""Fetching hash lists from exchanges into a bank, through python-threatexchange's clients.

Every exchange python-threatexchange ships is reachable by its name (`EXCHANGES`): NCMEC's hash
sharing, StopNCII.org, Meta's ThreatExchange, Tech Against Terrorism, a local file, and the
library's static sample. A fetch is incremental: after each batch ("delta") the exchange hands
back, its entries are added to the bank, the entries it says were deleted upstream are disabled,
and the exchange's checkpoint is stored with the bank (`bank_fetch_checkpoints`), so the next
fetch, or one that was interrupted, starts where this one got to.

Checkpoints are kept as JSON and read back into the exchange's own dataclass (never pickled).
Credentials are found the library's way (each exchange's environment variable or file, e.g.
TX_NCMEC_CREDENTIALS, TX_STOPNCII_KEYS); they are never stored here.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dacite
from threatexchange.exchanges.clients.ncmec.hash_api import NCMECEntryUpdate
from threatexchange.exchanges.fetch_state import SignalOpinionCategory
from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI
from threatexchange.exchanges.impl.ncmec_api import NCMECSignalExchangeAPI
from threatexchange.exchanges.impl.static_sample import StaticSampleSignalExchangeAPI
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from threatexchange.exchanges.impl.techagainstterrorism_api import TATSignalExchangeAPI
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.sha256 import VideoSHA256Signal
from threatexchange.signal_type.signal_base import SignalType

from accord.errors import InvalidInput, ServiceError
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.importers import ncmec_fingerprint_entry, ncmec_source
from accord.storage.banks import BankEntryStore

_APIS: tuple[type[SignalExchangeAPI[Any, Any, Any, Any, Any]], ...] = (
    NCMECSignalExchangeAPI,
    StopNCIISignalExchangeAPI,
    FBThreatExchangeSignalExchangeAPI,
    TATSignalExchangeAPI,
    LocalFileSignalExchangeAPI,
    StaticSampleSignalExchangeAPI,
)
EXCHANGES: dict[str, type[SignalExchangeAPI[Any, Any, Any, Any, Any]]] = {
    api.get_name(): api for api in _APIS
}
#: The signal types asked for: those a bank keeps (video_md5 and video_sha256 are stored as
#: md5 and sha256 and match any file with those bytes).
SIGNAL_TYPES: tuple[type[SignalType], ...] = (PdqSignal, VideoMD5Signal, VideoSHA256Signal)
MAX_LABEL_CHARS = 128
_DACITE = dacite.Config(cast=[enum.Enum, set, tuple], strict=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """What one fetch did."""

    deltas: int
    updates: int
    added: int
    disabled: int
    skipped: int


def fetch_into_bank(
    store: BankEntryStore,
    bank: str,
    *,
    exchange: str,
    options: dict[str, Any],
    on_updates: Callable[[int], None] = lambda _n: None,
) -> FetchResult:
    """Fetch from `exchange` into `bank` from its stored checkpoint on; store each new one."""
    store.get_bank(bank)
    api_cls = exchange_named(exchange)
    collab = _collab_config(api_cls, bank, options)
    checkpoint = _load_checkpoint(api_cls, store.get_fetch_checkpoint(bank, exchange))
    try:
        api = api_cls.for_collab(collab)
    except Exception as exc:  # the library's credential and configuration errors
        raise InvalidInput(f"cannot use the {exchange} exchange: {type(exc).__name__}") from None
    deltas = updates = added = disabled = skipped = 0
    for delta in _deltas(api, checkpoint, exchange):
        entries: list[BankEntry] = []
        deleted: list[str] = []
        for key, record in delta.updates.items():
            source, found = _record_entries(api_cls, collab, exchange, key, record)
            if found is None:
                deleted.append(source)
                continue
            skipped += 0 if found else 1
            entries.extend(e for e in found if e is not None)
            skipped += sum(e is None for e in found)
        added += store.add_entries(bank, entries) if entries else 0
        if deleted:
            disabled += store.withdraw_sources(bank, deleted)
        store.put_fetch_checkpoint(bank, exchange, dump_checkpoint(delta.checkpoint))
        deltas += 1
        updates += len(delta.updates)
        on_updates(len(delta.updates))
    return FetchResult(
        deltas=deltas, updates=updates, added=added, disabled=disabled, skipped=skipped
    )


def exchange_named(name: str) -> type[SignalExchangeAPI[Any, Any, Any, Any, Any]]:
    api = EXCHANGES.get(name)
    if api is None:
        raise InvalidInput(f"unknown exchange (one of {', '.join(sorted(EXCHANGES))})")
    return api


def _deltas(api: Any, checkpoint: Any, exchange: str) -> Iterator[Any]:
    """The exchange's deltas; its network and protocol errors become one `ServiceError`."""
    iterator = api.fetch_iter(list(SIGNAL_TYPES), checkpoint)
    while True:
        try:
            delta = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # requests, XML and assertion errors of the clients
            raise ServiceError(f"fetching from {exchange} failed: {type(exc).__name__}") from None
        yield delta


def _record_entries(
    api_cls: Any, collab: Any, exchange: str, key: Any, record: Any
) -> tuple[str, list[BankEntry | None] | None]:
    """One update record's source and bank entries (None for a malformed signal), or its source
    and None when the record says it was deleted upstream."""
    if isinstance(record, NCMECEntryUpdate):
        return _ncmec_entries(collab, exchange, record)
    source = _source(exchange, key)
    if record is None:
        return source, None
    return source, list(_entries(api_cls, collab, key, record, source))


def _ncmec_entries(
    collab: Any, exchange: str, record: NCMECEntryUpdate
) -> tuple[str, list[BankEntry | None] | None]:
    """An NCMEC entry read as `bank import --format ncmec` reads one: its MD5 and PDQ
    fingerprints, of images and videos, labelled with its classification, under the same source.

    The library's own conversion keeps MD5 only for videos (most of NCMEC's image list is MD5)
    and never reports a deletion (a deleted entry arrives as a record marked deleted, which only
    its merge step turns into a removal); both are taken from the record here instead.
    """
    source = ncmec_source(exchange, record.member_id, record.id)
    if record.deleted:
        return source, None
    if collab.only_esp_ids and record.member_id not in collab.only_esp_ids:
        return source, []
    found: list[BankEntry | None] = []
    for tag, value in record.fingerprints.items():
        try:
            entry = ncmec_fingerprint_entry(
                tag, value, source=source, label=record.classification or ""
            )
        except InvalidInput:
            found.append(None)
            continue
        if entry is not None:
            found.append(entry)
    return source, found


def _entries(
    api_cls: Any, collab: Any, key: Any, record: Any, source: str
) -> Iterator[BankEntry | None]:
    """The bank entries of one update record (None for each signal that is malformed)."""
    converted = api_cls.naive_convert_to_signal_type(list(SIGNAL_TYPES), collab, {key: record})
    for signal_type, signals in converted.items():
        for signal, metadata in signals.items():
            opinion = metadata.get_as_aggregate_opinion()
            label = ",".join(sorted(str(t) for t in opinion.tags))[:MAX_LABEL_CHARS]
            try:
                yield BankEntry.parse(
                    signal_type.get_name(),
                    signal,
                    source=source,
                    label=label,
                    enabled=opinion.category != SignalOpinionCategory.NEGATIVE_CLASS,
                )
            except InvalidInput:
                yield None


def _source(exchange: str, key: Any) -> str:
    """The entries' source: the exchange and its record id (ids such as NCMEC's are short and
    say where to look); keys that are the signal itself are replaced by a digest."""
    if isinstance(key, str | int) and len(str(key)) <= 128:
        return f"{exchange}:{key}"
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    return f"{exchange}:{digest}"


def _collab_config(api_cls: Any, bank: str, options: dict[str, Any]) -> Any:
    """The exchange's collaboration settings: `options` (names as the library's config
    dataclass), named after the bank."""
    config_cls = api_cls.get_config_cls()
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    data: dict[str, Any] = {"name": bank, "api": api_cls.get_name(), "enabled": True}
    hints = typing.get_type_hints(config_cls)
    for key, value in options.items():
        if key not in fields or key in ("name", "api", "enabled"):
            raise InvalidInput(f"the {api_cls.get_name()} exchange has no setting {key!r}")
        kind = hints.get(key)
        if isinstance(kind, type) and issubclass(kind, enum.Enum) and value in kind.__members__:
            value = kind[value].value  # a member named as well as by its value
        data[key] = value
    try:
        return dacite.from_dict(config_cls, data, config=_DACITE)
    except (dacite.DaciteError, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"bad setting for the {api_cls.get_name()} exchange: {type(exc).__name__}"
        ) from None


def dump_checkpoint(checkpoint: Any) -> str:
    """A checkpoint dataclass as canonical JSON (enums by value, sets as sorted lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, set | frozenset):
            return sorted(value)
        raise TypeError(type(value).__name__)

    return json.dumps(dataclasses.asdict(checkpoint), default=plain, sort_keys=True)


def _load_checkpoint(api_cls: Any, text: str | None) -> Any:
    """The stored checkpoint (None: fetch from the start, also when the exchange says a
    checkpoint this old must not be resumed)."""
    if text is None:
        return None
    try:
        checkpoint = dacite.from_dict(api_cls.get_checkpoint_cls(), json.loads(text), _DACITE)
    except (dacite.DaciteError, ValueError, TypeError):
        raise InvalidInput("the stored fetch checkpoint is unreadable") from None
    return None if checkpoint.is_stale() else checkpoint
