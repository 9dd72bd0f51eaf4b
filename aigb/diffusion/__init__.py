"""Generic diffusion pieces for planners, in pure torch (no market imports).

Split by role: ``schedule`` (forward process), ``condition`` (context + droppable outcome, CFG
dropout), ``denoisers`` (transformer, temporal U-Net), ``training`` (completer loss),
``sampling`` (DDIM/DDPM, in-painting, CFG, warm start) and ``guidance`` (training-free guidance,
strength search, best-of-N). ``layers`` holds the seeded building blocks.
"""

from aigb.diffusion.condition import ConditionEmbedding
from aigb.diffusion.denoisers import DENOISERS, TemporalUNet, TransformerDenoiser, check_denoiser
from aigb.diffusion.guidance import (
    PRESETS, BestOfN, SearchResult, TFGConfig, TFGGuidance, beam_search_strengths, best_of_n, dps, freedom, lgd, mpgd, ugd,
)
from aigb.diffusion.layers import build_seeded, seeded_init_
from aigb.diffusion.sampling import (
    DDIMStep, cfg_combine, cfg_eps_fn, ddim_sample, ddim_timesteps, ddpm_sample, inpaint, x0_model_eps_fn,
)
from aigb.diffusion.schedule import CosineSchedule
from aigb.diffusion.training import completer_loss, prefix_mask, random_prefix_mask

__all__ = [
    "CosineSchedule", "ConditionEmbedding", "TransformerDenoiser", "TemporalUNet", "DENOISERS", "check_denoiser",
    "completer_loss", "prefix_mask", "random_prefix_mask",
    "cfg_combine", "cfg_eps_fn", "x0_model_eps_fn", "inpaint", "ddim_timesteps", "ddim_sample", "ddpm_sample", "DDIMStep",
    "TFGConfig", "TFGGuidance", "PRESETS", "dps", "lgd", "freedom", "mpgd", "ugd",
    "beam_search_strengths", "SearchResult", "best_of_n", "BestOfN",
    "build_seeded", "seeded_init_",
]
