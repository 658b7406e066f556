"""Every model behind one interface (see base.py); `MODELS` maps the CLI name to its class."""
from .bpr import BPR
from .cmf import CMF
from .content import Content
from .emcdr import EMCDR
from .itemknn import ItemKNN
from .lmkg import LMKG
from .pop import Pop
from .userknn import UserKNN

MODELS = {m.name: m for m in (Pop, ItemKNN, UserKNN, Content, BPR, CMF, EMCDR, LMKG)}
