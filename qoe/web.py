"""Web browsing quality from session time: ITU-T G.1030's opinion model (core, no I/O).

Source: ITU-T G.1030 (11/2005) Annex A; in the 02/2014 edition Appendix II, "Opinion model
for a simple web search task", eq. II-2: perceived quality is linear in the logarithm of the
session time, MOS = a - b * ln(T), calibrated per network context. With MOS 5 at Tmin and
MOS 1 at Tmax: b = 4 / ln(Tmax / Tmin), a = 5 + b * ln(Tmin); the result is clipped to 1..5.

The anchors depend on the context and are configuration. The one pair cems ships is the
one an independent implementation cites to G.1030 (02/2014) eq. II-2 and Fig. II.4 (Tmin
0.67 s, Tmax 6 s; repository linhhoang-ex/uav-bs-placement-drl, used in IEEE/ACM
Transactions on Networking 2025, DOI 10.1109/TON.2025.3552097); which context of G.1030 it
belongs to is not known (../shared/SOURCES.md). The session time here is a page's load time
as a test client or agent measures it: G.1030 weights the times of a session's downloads,
and those weights are not known, so a single page load stands for the session.
"""

import dataclasses
import math

from qoe.errors import QoeInputError

MODEL = "ITU-T G.1030 (02/2014) App. II eq. II-2, MOS = a - b ln(T)"


@dataclasses.dataclass(frozen=True)
class WebAnchors:
    """Session times that give MOS 5 (t_min_s) and MOS 1 (t_max_s) in one context."""

    t_min_s: float
    t_max_s: float
    source: str

    def __post_init__(self):
        if not 0 < self.t_min_s < self.t_max_s or not math.isfinite(self.t_max_s):
            raise QoeInputError("anchors", (self.t_min_s, self.t_max_s),
                                "0 < t_min_s < t_max_s, both finite")


G1030_FIG_II4 = WebAnchors(0.67, 6.0, "G.1030 (02/2014) App. II Fig. II.4 as cited by "
                                      "linhhoang-ex/uav-bs-placement-drl (context not known)")


@dataclasses.dataclass(frozen=True)
class WebQoe:
    mos: float
    a: float
    b: float
    clipped: bool  # the session time is outside [t_min_s, t_max_s]


def web_mos(session_time_s: float, anchors: WebAnchors = G1030_FIG_II4) -> WebQoe:
    """MOS of a web session that took `session_time_s` seconds."""
    if not session_time_s > 0 or not math.isfinite(session_time_s):
        raise QoeInputError("session_time_s", session_time_s, "a positive number of seconds")
    b = 4 / math.log(anchors.t_max_s / anchors.t_min_s)
    a = 5 + b * math.log(anchors.t_min_s)
    raw = a - b * math.log(session_time_s)
    mos = min(5.0, max(1.0, raw))
    return WebQoe(mos, a, b, mos != raw)
