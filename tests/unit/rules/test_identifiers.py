"""Random identifiers (rules/identifiers.py): shapes, no byte handed out twice (also
across the pool's refills and from several threads), and a forked child never draws
what its parent will."""

from __future__ import annotations

import os
import re
import threading

from synapse_email_gate.rules.identifiers import TOKEN_LENGTH, new_id, new_token, random_bytes


def test_tokens_and_ids_have_their_shapes() -> None:
    for _ in range(2000):
        assert re.fullmatch(rf"[A-HJ-NP-Z2-9]{{{TOKEN_LENGTH}}}", new_token())
        row_id = new_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", row_id) and not row_id.startswith("-")


def test_no_identifier_repeats_across_many_refills() -> None:
    ids = [new_id() for _ in range(20_000)]  # 240,000 bytes: dozens of refills
    assert len(set(ids)) == len(ids)


def test_threads_drawing_together_never_get_the_same_bytes() -> None:
    drawn: list[list[bytes]] = [[] for _ in range(4)]

    def draw(into: list[bytes]) -> None:
        for _ in range(3000):
            into.append(random_bytes(16))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [chunk for into in drawn for chunk in into]
    assert len(set(everything)) == len(everything) == 12_000


def test_a_forked_child_does_not_draw_what_its_parent_draws() -> None:
    new_id()  # the pool holds bytes the child must not reuse
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        os.write(write_end, " ".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    parents = {new_id() for _ in range(50)}
    with os.fdopen(read_end) as pipe:
        childs = set(pipe.read().split())
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert len(childs) == 50 and not parents & childs
