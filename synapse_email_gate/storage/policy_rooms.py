"""The followed policy rooms: what the background-tasks process found joining
them, and a cheap sign, per room, that something happened there.

The status rows (table `email_gate_policy_rooms`) are written by the one process
that joins the rooms and read by every process. The sign is the stream position
of the room's last event, read from Synapse's `events` table through its
`(room_id, stream_ordering)` index: any new event in the room, a redaction
included, moves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from synapse.storage.database import LoggingTransaction

from synapse_email_gate.storage.runner import Runner


@attrs.frozen
class RoomStatus:
    entry: str  # as configured in policy_rooms
    room_id: str | None
    joined: bool
    problem: str | None
    checked_ts: int


def _statuses_txn(txn: LoggingTransaction) -> dict[str, RoomStatus]:
    txn.execute("SELECT entry, room_id, joined, problem, checked_ts FROM email_gate_policy_rooms")
    return {
        row[0]: RoomStatus(row[0], row[1], bool(row[2]), row[3], int(row[4]))
        for row in txn.fetchall()
    }


def _signs_txn(
    txn: LoggingTransaction, entries: Sequence[str]
) -> tuple[dict[str, RoomStatus], dict[str, int | None]]:
    statuses = _statuses_txn(txn)
    room_ids = [entry for entry in entries if entry.startswith("!")]
    room_ids += [
        status.room_id
        for entry, status in statuses.items()
        if entry in entries and status.room_id is not None
    ]
    signs: dict[str, int | None] = {}
    for room_id in dict.fromkeys(room_ids):
        txn.execute("SELECT MAX(stream_ordering) FROM events WHERE room_id = ?", (room_id,))
        row = txn.fetchone()
        signs[room_id] = None if row is None or row[0] is None else int(row[0])
    return statuses, signs


def _write_txn(txn: LoggingTransaction, status: RoomStatus) -> None:
    txn.execute("DELETE FROM email_gate_policy_rooms WHERE entry = ?", (status.entry,))
    txn.execute(
        "INSERT INTO email_gate_policy_rooms (entry, room_id, joined, problem, checked_ts)"
        " VALUES (?, ?, ?, ?, ?)",
        (status.entry, status.room_id, status.joined, status.problem, status.checked_ts),
    )


class PolicyRoomStore:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def signs(
        self, entries: Sequence[str]
    ) -> tuple[dict[str, RoomStatus], dict[str, int | None]]:
        """The rooms' statuses, and for each known room ID the position of its last
        event (None: no event known here)."""
        return await self._runner.run("email_gate_policy_room_signs", _signs_txn, list(entries))

    async def write(self, status: RoomStatus) -> None:
        await self._runner.run("email_gate_policy_room_status", _write_txn, status)
