"""Every model behind one interface (see base.py); `MODELS` maps the CLI name to its class."""
from .bpr import BPR
from .cmf import CMF
from .content import Content
from .emcdr import EMCDR
from .itemknn import ItemKNN
from .lmkg import LMKG
from .pop import Pop

MODELS = {m.name: m for m in (Pop, ItemKNN, Content, BPR, CMF, EMCDR, LMKG)}
