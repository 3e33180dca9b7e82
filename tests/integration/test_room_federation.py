"""The moderation bot and users of other servers, with two real Synapses that
federate on loopback: a command from a remote member is ignored without an
answer, while the same command from a local moderator gets the bot's refusal
of a federated room."""

from __future__ import annotations

import re
from typing import Any

from tests.harness.federation import federating_server
from tests.integration.matrix import MatrixUser, wait_for_bot_line, wait_until


def test_a_command_from_a_user_of_another_server_is_ignored(make_synapse: Any) -> None:
    here = federating_server(make_synapse, {"moderators": [], "moderation_room": "#mods:x"})
    # The room alias names this server, known only now: configure and restart.
    here.module_config.update(
        moderators=[here.user_id("mod")], moderation_room=f"#moderation:{here.server_name}"
    )
    here.write_config()
    here.restart()
    there = federating_server(make_synapse, None, raw=True, module=None)

    mod = MatrixUser(here, "mod")
    remote = MatrixUser(there, "remote")
    wait_until(lambda: here.query("SELECT 1 FROM users WHERE name = ?", (mod.bot,)), "the bot")
    room = mod.create_room(alias="moderation", federate=True, invite=(mod.bot,))
    wait_for_bot_line(mod, room, "users of other servers may join")

    mod.invite(room, remote.user_id)
    wait_until(lambda: _try_join(remote, room), "the remote user to join", timeout=30)
    wait_until(lambda: remote.user_id in mod.joined(room), "the join to reach this server")
    wait_for_bot_line(mod, room, re.escape(f"not moderators: {remote.user_id}"))

    before = len(mod.bot_lines(room))
    remote.say(room, "!gate token list")
    wait_until(
        lambda: f"ignored a command from {remote.user_id} (another server)" in here.log_text(),
        "the bot to ignore the remote command",
    )
    reply = mod.ask_bot(room, "!gate token list")
    assert reply.startswith("I do not answer commands in this room"), reply
    lines = mod.bot_lines(room)[before:]
    assert lines == [reply], lines


def _try_join(user: MatrixUser, room: str) -> bool:
    try:
        user.join(room)
    except AssertionError:
        return False  # the invite has not reached the other server yet
    return True
