"""``specdsl grid``: step 1 of compound scaling, a FLOPs-constrained search for alpha, beta, gamma.

`space` enumerates the grid and keeps the points whose measured MACs ratio meets the budget, `halving`
plans the successive-halving rungs, `proxy` derives each network's short training recipe, `worker`
trains networks (processes, GPUs), `search` runs the rungs and `report` writes the table, plot and
``best.spec``. `space`, `halving`, `proxy` and `store` are framework-free; training needs the ``train``
extra. See docs/grid.md.
"""
