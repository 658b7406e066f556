"""LMKG: the CrossLens model. Language-model item text + knowledge graph + cross-domain sequence learning.

- network.py: item i = adapter(whitened frozen text_i) + knowledge_i + id_i, with a popularity bias; new items
  (no training interaction) take the content path alone. A causal Transformer reads the mixed-domain history
  (item + domain + position) and is read out for the domain of the item to predict. Sampled softmax against
  uniform negatives from each domain's items with training interactions; the ID, bias and entity tables take lazy
  updates of the rows a step read (engine.train.AdamWithSparseTables).
- windows.py: training windows in three views (mixed, target-only, cold start).
- collaborative.py: the history's item co-occurrence as a sparse channel beside the network (the frozen-text
  channel beside it is engine.models.content).
- calibration.py: the view gate, the channels' weights, the text channel's history view and the new-item offset,
  chosen on validation per segment.
- model.py: the estimator (fit, score, state); explain_hooks.py: re-scoring perturbations for engine.explain.
"""
from .calibration import CF_WEIGHTS  # noqa: F401
from .model import DEFAULTS, LMKG  # noqa: F401
