"""Collective matrix factorisation: one user factor shared by every domain, item factors per domain.

BPR on the interactions of all domains, each negative drawn from the positive's own domain; a user with only
source interactions still gets a factor that lives in the target items' space. `target_weight` weighs the
target domain's pairs in the loss, so the shared factor is not dominated by a larger source domain.
"""
from .bpr import BPR
from .mf import MF_DEFAULTS, MF_RANGES, MF_SEARCH
from .settings import POSITIVE, Space


class CMF(BPR):
    name = "cmf"
    description = "factorisation shared across domains"
    all_domains = True
    defaults = {**MF_DEFAULTS, "target_weight": 5.0}
    ranges = {**MF_RANGES, "target_weight": POSITIVE}
    search = {**MF_SEARCH, "target_weight": Space(1, 20, log=True)}
    help = {"target_weight": "weight of a target-domain interaction relative to a source-domain one"}
