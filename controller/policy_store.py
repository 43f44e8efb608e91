"""The policy engine's decisions and memory in the controller's store (shell).

DecisionStore keeps every decision (the newest `keep`; older ones are pruned) and answers
the decision log's reads of what memory no longer holds. save_memory/load_memory keep the
engine's memory (actions in force with their intents, cooldowns, holds, the twin's errors)
and the mode an operator set by hand, so that a restarted controller carries on: the
actions stay on the switches and are reverted when their cause is gone, as before.
The encoding is controller.policy.codec's; nothing here decides anything.
"""

import logging
import time

from controller.policy.codec import (decision_from_json, decision_to_json, memory_from_json,
                                     memory_to_json)
from controller.policy.log import Logged

LOG = logging.getLogger("cems.policy")


class DecisionStore:
    def __init__(self, store, keep: int = 100_000):
        self.store = store        # controller.store.Store
        self.keep = keep
        self._appended = 0

    def append(self, items: list[Logged]) -> None:
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO policy_decisions (seq, time_unix_s, kind, element, customer_id, "
                "for_customers, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(i.seq, i.decision.time_unix_s, i.decision.kind, i.decision.element,
                  i.decision.customer_id, "," + ",".join(i.decision.for_customers) + ",",
                  decision_to_json(i.decision)) for i in items])
            self._appended += len(items)
            if self._appended >= 1000:
                self._appended = 0
                db.execute("DELETE FROM policy_decisions WHERE seq <= "
                           "(SELECT MAX(seq) FROM policy_decisions) - ?", (self.keep,))

    def last_seq(self) -> int:
        return self.store.query("SELECT COALESCE(MAX(seq), 0) FROM policy_decisions")[0][0]

    def newest(self, count: int) -> list[Logged]:
        rows = self.store.query("SELECT seq, body FROM policy_decisions ORDER BY seq DESC "
                                "LIMIT ?", (count,))
        return [Logged(seq, decision_from_json(body)) for seq, body in reversed(rows)]

    def select(self, after_seq: int, limit: int, customer_id: str, element: str,
               kinds) -> list[Logged]:
        sql = ["SELECT seq, body FROM policy_decisions WHERE seq > ?"]
        params: list = [after_seq]
        if customer_id:
            sql.append("AND (customer_id = ? OR instr(for_customers, ?) > 0)")
            params += [customer_id, f",{customer_id},"]
        if element:
            sql.append("AND element = ?")
            params.append(element)
        if kinds:
            sql.append(f"AND kind IN ({', '.join('?' * len(kinds))})")
            params += list(kinds)
        sql.append("ORDER BY seq LIMIT ?")
        params.append(limit)
        rows = self.store.query(" ".join(sql), tuple(params))
        return [Logged(seq, decision_from_json(body)) for seq, body in rows]


def save_memory(store, memory, mode_set_by_hand: str = "", who: str = "") -> None:
    """The memory, and (when given) the mode an operator set by hand and who set it."""
    with store.transaction() as db:
        db.execute("INSERT INTO policy_state (id, memory, saved_unix_s) VALUES (1, ?, ?) "
                   "ON CONFLICT (id) DO UPDATE SET memory = excluded.memory, "
                   "saved_unix_s = excluded.saved_unix_s", (memory_to_json(memory), time.time()))
        if mode_set_by_hand:
            db.execute("UPDATE policy_state SET mode = ?, mode_set_by = ? WHERE id = 1",
                       (mode_set_by_hand, who))


def load_memory(store):
    """(memory or None, mode set by hand or '', who set it). A memory this cems cannot read
    is logged and left out: the engine starts afresh rather than not at all."""
    rows = store.query("SELECT memory, mode, mode_set_by FROM policy_state WHERE id = 1")
    if not rows:
        return None, "", ""
    text, mode, who = rows[0]
    try:
        return memory_from_json(text), mode, who
    except (ValueError, KeyError, TypeError) as err:
        LOG.error("the stored policy memory cannot be read (%s): starting without the actions "
                  "it held; the switches keep their policy flows until the next "
                  "reconciliation removes them", err)
        return None, mode, who
