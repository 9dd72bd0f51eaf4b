"""Workflows above evaluation: training (with validation), sweeps, OIL's rollout training, guidance
tuning and the demo pipeline. They orchestrate algos, strategies and eval; eval imports none of them."""
