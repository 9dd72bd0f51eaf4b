"""aigb's DiffBid planner as functions of plain weight tensors: plan the day, act by inverse dynamics.

At tick t the realised plan rows 0..t (computed from the v1 states of ticks 0..t) are in-painted,
DDIM samples the rest of the day with classifier-free guidance (eps = eps_u + w (eps_c - eps_u);
for a denoiser that predicts the clean plan, the same mix of its outputs and the noise they imply),
and the inverse-dynamics MLP turns rows t-2..t+1 of the plan into the tick's action
a = log(alpha / C). The noise comes from a ``torch.Generator`` seeded by aigb's named stream
("diffbid/plan", t) under the strategy's seed, so plans and bids equal aigb's for the same seed.

The serving options (guidance w, return / CPA / utilisation targets, DDIM steps, temperature,
eta, clip) are fixed at export and read from ``params.json``; the denoiser (transformer or
temporal U-Net, which may also see each row's realised flag), condition embedding and inverse
dynamics are aigb's exponential-moving-average weights, called through the ``torch.nn.functional``
operations aigb's modules call.

This file is copied into exported folders: numpy, torch and the standard library only.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from .history import FEATURE_NAMES, N_CATEGORIES
from .networks import Bounds, Weights, attention, layer_norm, linear, mlp

_V1 = {name: i for i, name in enumerate(FEATURE_NAMES)}
_MIN_P_VALUE = 1e-7


def torch_seed(seed: int, name: str, *indices: int) -> int:
    """aigb's ``torch_seed``: 63 bits of the named stream's SeedSequence state."""
    key = (zlib.crc32(name.encode("utf-8")),) + tuple(int(i) for i in indices)
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=key).generate_state(2, dtype=np.uint32)
    return int(state.view(np.uint64)[0] >> np.uint64(1))


# ------------------------------------------------------------------------- plan features


class MarketView:
    """Plan rows, campaign context and tick information from v1 states (aigb.algos.plan_features)."""

    def __init__(self, n_ticks: int) -> None:
        self.n_ticks = int(n_ticks)

    def plan(self, states: np.ndarray) -> np.ndarray:
        x = np.asarray(states, dtype=np.float64)
        col = lambda name: x[..., _V1[name]]  # noqa: E731
        budget, cpa, spend = col("budget"), col("target_cpa"), col("spend")
        tick_spend = np.diff(spend, axis=-1, prepend=0.0)
        lwc, p_value = col("last3_lwc_mean"), col("last3_p_value_mean")
        with np.errstate(divide="ignore", invalid="ignore"):
            price = np.where((lwc > 0) & (p_value > 0), lwc / (np.maximum(p_value, _MIN_P_VALUE) * cpa), 1.0)
            log_ratio = np.log(np.maximum(col("cpa_ratio"), np.exp(-2.0)))
        columns = [
            col("budget_left"),
            np.log1p(np.maximum(tick_spend, 0.0) / (budget / self.n_ticks)),
            col("conversions") * cpa / budget,
            np.clip(log_ratio, -2.0, 2.0),
            np.clip(np.log(price), -3.0, 3.0),
            col("last3_win_rate"),
            col("cur_n_pv"),
        ]
        return np.stack(columns, axis=-1).astype(np.float32)

    def context(self, states: np.ndarray) -> np.ndarray:
        x = np.asarray(states, dtype=np.float64)[..., 0, :]
        onehot = x[..., _V1["category_0"]: _V1["category_0"] + N_CATEGORIES]
        return np.concatenate([np.log(x[..., [_V1["budget"], _V1["target_cpa"]]]), onehot], axis=-1).astype(np.float32)

    def tick_info(self, states: np.ndarray) -> np.ndarray:
        x = np.asarray(states, dtype=np.float64)
        p_value = np.log(np.maximum(x[..., _V1["cur_p_value_mean"]], _MIN_P_VALUE))
        return np.stack([x[..., _V1["time_left"]], p_value], axis=-1).astype(np.float32)


class RawView:
    """The plan is the state itself, the context its first row, the tick information time left."""

    def __init__(self, n_ticks: int) -> None:
        self.n_ticks = int(n_ticks)

    def plan(self, states):
        return np.asarray(states, dtype=np.float32)

    def context(self, states):
        return np.asarray(states, dtype=np.float32)[..., 0, :]

    def tick_info(self, states):
        n = np.shape(states)[-2]
        time_left = (self.n_ticks - np.arange(n, dtype=np.float64)) / self.n_ticks
        return np.broadcast_to(time_left[:, None], np.shape(states)[:-1] + (1,)).astype(np.float32)


class Scaler:
    """aigb's RobustScaler: unit = (x - center) / half, per channel (float32)."""

    def __init__(self, w: Weights) -> None:
        self.center = w["center"].numpy().astype(np.float32)
        self.half = w["half"].numpy().astype(np.float32)

    def to_unit(self, x):
        return (x - self.center) / self.half


# ------------------------------------------------------------------------- networks


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10_000.0) / max(half - 1, 1)))
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def step_embedding(w: Weights, t: torch.Tensor, dim: int) -> torch.Tensor:
    return mlp(w.sub("net"), (0, 2), sinusoidal_embedding(t, dim), activation=F.mish)


def condition(w: Weights, context: torch.Tensor, outcome) -> torch.Tensor:
    """ConditionEmbedding: mix([MLP(context), MLP(outcome) or the learned null])."""
    c = mlp(w.sub("context_net"), (0, 2), context, activation=F.mish)
    if outcome is None or "outcome_net.0.weight" not in w:
        o = w["null.value"].to(c.dtype).expand(context.shape[0], c.shape[-1])
    else:
        o = mlp(w.sub("outcome_net"), (0, 2), outcome, activation=F.mish)
    return mlp(w.sub("mix"), (0, 2), torch.cat([c, o], dim=-1), activation=F.mish)


def with_known_flags(p: dict, x_t: torch.Tensor, known) -> torch.Tensor:
    """x_t (B, H, D), plus each row's known (realised) flag as one more feature when the net takes it."""
    if not p.get("known_input", False):
        return x_t
    if known is None:
        flags = torch.zeros(x_t.shape[0], x_t.shape[1], 1, device=x_t.device, dtype=x_t.dtype)
    else:
        flags = known.to(device=x_t.device, dtype=x_t.dtype).expand(x_t.shape[0], x_t.shape[1])[..., None]
    return torch.cat([x_t, flags], dim=-1)


def transformer_eps(w: Weights, p: dict, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, known=None) -> torch.Tensor:
    d, heads = int(p["d_model"]), int(p["n_heads"])
    c = step_embedding(w.sub("step"), t, d) + linear(w.sub("cond"), emb)                  # (B, d)
    rows = linear(w.sub("row_in"), with_known_flags(p, x_t, known)) + c[:, None, :]       # (B, H, d)
    h = torch.cat([c[:, None, :], rows], dim=1) + w["position.value"][None]               # (B, H+1, d)
    for i in range(int(p["n_layers"])):
        blk = w.sub("blocks.%d" % i)
        b, length, _ = h.shape
        q, k, v = linear(blk.sub("qkv"), layer_norm(blk.sub("norm1"), h)).view(b, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = attention(q, k, v).transpose(1, 2).reshape(b, length, d)
        h = h + linear(blk.sub("proj"), a)
        h = h + linear(blk.sub("fc2"), F.gelu(linear(blk.sub("fc1"), layer_norm(blk.sub("norm2"), h))))
    return linear(w.sub("head"), layer_norm(w.sub("norm"), h[:, 1:]))                     # (B, H, D)


def _conv(w: Weights, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    weight = w["weight"]
    if stride == 1:
        return F.conv1d(x, weight, w["bias"], 1, weight.shape[-1] // 2)
    return F.conv1d(x, weight, w["bias"], stride, 1)


def _conv_block(w: Weights, x: torch.Tensor) -> torch.Tensor:
    """Sequential(Conv1d, GroupNorm, Mish)."""
    h = _conv(w.sub("0"), x)
    channels = h.shape[1]
    h = F.group_norm(h, math.gcd(8, channels), w["1.weight"], w["1.bias"], 1e-5)
    return F.mish(h)


def _residual(w: Weights, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    h = _conv_block(w.sub("conv1"), x) + linear(w.sub("embed.1"), F.mish(e))[:, :, None]
    skip = _conv(w.sub("skip"), x) if "skip.weight" in w else x
    return _conv_block(w.sub("conv2"), h) + skip


def unet_eps(w: Weights, p: dict, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, known=None) -> torch.Tensor:
    horizon, n_levels = int(p["horizon"]), len(p["dim_mults"])
    e = step_embedding(w.sub("step"), t, int(p["dim"])) + linear(w.sub("cond"), emb)
    multiple = 2 ** (n_levels - 1)
    padded = math.ceil(horizon / multiple) * multiple
    h = F.pad(with_known_flags(p, x_t, known).transpose(1, 2), (0, padded - horizon))     # (B, D [+1], H')
    skips = []
    for i in range(n_levels):
        h = _residual(w.sub("down.%d.1" % i), _residual(w.sub("down.%d.0" % i), h, e), e)
        skips.append(h)
        if i < n_levels - 1:
            h = _conv(w.sub("downsample.%d" % i), h, stride=2)
    for j in range(2):
        h = _residual(w.sub("mid.%d" % j), h, e)
    for j in range(n_levels):
        h = torch.cat([h, skips.pop()], dim=1)
        h = _residual(w.sub("up.%d.1" % j), _residual(w.sub("up.%d.0" % j), h, e), e)
        if j < n_levels - 1:
            up = w.sub("upsample.%d" % j)
            h = F.conv_transpose1d(h, up["weight"], up["bias"], 2, 1)
    out = _conv_block(w.sub("out"), h)                                                     # Conv1d, GroupNorm, Mish
    out = _conv(w.sub("out.3"), out)
    return out[:, :, :horizon].transpose(1, 2)


# ------------------------------------------------------------------------- the planner


class DiffBidPlanner:
    """``plan(states, seed) -> (action, plan rows in scaled units)`` for the v1 states of ticks 0..t."""

    def __init__(self, params: dict, tensors: dict, device: str = "cpu") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.p = params
        self.w = Weights({k: v.to(self.device) for k, v in tensors.items()})
        self.n_ticks = int(params["n_ticks"])
        self.horizon = self.n_ticks + 1
        self.view = MarketView(self.n_ticks) if params["view"] == "market" else RawView(self.n_ticks)
        self.plan_scaler, self.context_scaler, self.info_scaler = (Scaler(Weights(tensors).sub(k)) for k in
                                                                   ("plan_scaler", "context_scaler", "info_scaler"))
        self.bounds = Bounds(*params["action_bounds"])
        self.alpha_bar = [float(x) for x in tensors["schedule.alpha_bar"]]
        self.timesteps = [int(s) for s in params["timesteps"]]
        self.outcome = torch.tensor([[float(params["outcome"][n]) for n in params["outcome_names"]]], dtype=torch.float32,
                                    device=self.device)
        self._embeddings = None

    def _abar(self, t: int) -> float:
        return 1.0 if t < 0 else self.alpha_bar[t]

    def _eps_fn(self, emb_cond: torch.Tensor, emb_null: torch.Tensor, known: torch.Tensor):
        """Classifier-free guidance: eps_u + w (eps_c - eps_u), both branches as one batch of 2."""
        p, w = self.p, self.w.sub("denoiser")
        net = transformer_eps if p["denoiser"] == "transformer" else unet_eps
        g = float(p["guidance"])
        if g == 1:
            return lambda x, t: net(w, p["net"], x, t, emb_cond, known)
        if g == 0:
            return lambda x, t: net(w, p["net"], x, t, emb_null, known)
        emb = torch.cat([emb_cond, emb_null], dim=0)
        known2 = torch.cat([known, known], dim=0)

        def eps_fn(x, t):
            eps_c, eps_u = net(w, p["net"], torch.cat([x, x], dim=0), torch.cat([t, t], dim=0), emb, known2).chunk(2, dim=0)
            return torch.lerp(eps_u, eps_c, torch.as_tensor(g, dtype=eps_c.dtype, device=eps_c.device))
        return eps_fn

    def _model_fn(self, emb_cond: torch.Tensor, emb_null: torch.Tensor, known: torch.Tensor):
        """The noise prediction the sampler takes: the net's own (prediction 'eps'), or for a net that
        predicts the clean plan (guidance mixed on its outputs) the noise that plan implies."""
        out = self._eps_fn(emb_cond, emb_null, known)
        if self.p.get("prediction", "eps") != "x0":
            return out
        abar = self.w["schedule.alpha_bar"]

        def eps_fn(x_t, t):
            ab = abar.to(x_t.device)[t].to(x_t.dtype)[:, None, None]
            return (x_t - ab.sqrt() * out(x_t, t)) / (1.0 - ab).sqrt()
        return eps_fn

    def _ddim(self, eps_fn, shape, known_x, known_mask, generator) -> torch.Tensor:
        p = self.p
        temperature, eta = float(p["temperature"]), float(p["eta"])
        clip = float(p["clip_x0"]) or None
        inpaint = lambda x: torch.where(known_mask[..., None], known_x.to(x.dtype), x)  # noqa: E731
        randn = lambda: torch.randn(shape, generator=generator, device=self.device, dtype=torch.float32)  # noqa: E731
        x = inpaint(temperature * randn())
        steps = self.timesteps
        for i, t in enumerate(steps):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            ab_t, ab_prev = self._abar(t), self._abar(t_prev)
            x_t = inpaint(x)
            eps = eps_fn(x_t, torch.full((shape[0],), t, dtype=torch.long, device=self.device))
            signal, noise_scale = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
            x0 = (x_t - noise_scale * eps) / signal
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
                eps = (x_t - signal * x0) / noise_scale
            sigma = 0.0
            if eta != 0.0 and t_prev >= 0:
                sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev))
            direction = math.sqrt(max(1.0 - ab_prev - sigma * sigma, 0.0))
            x = math.sqrt(ab_prev) * x0 + direction * eps
            if sigma > 0.0:
                x = x + (sigma * temperature) * randn()
            x = inpaint(x)
        return inpaint(x).to(torch.float32)

    def plan(self, states: np.ndarray, seed: int):
        """(action, plan (T+1, P) in scaled units) at tick t = len(states) - 1."""
        states = np.asarray(states, dtype=np.float32)
        t = states.shape[0] - 1
        if t >= self.n_ticks:
            raise ValueError("tick %d is beyond the planner's day of %d ticks" % (t, self.n_ticks))
        dev = self.device
        with torch.no_grad():
            prefix = self.plan_scaler.to_unit(self.view.plan(states))                          # (t+1, P)
            n_channels = prefix.shape[-1]
            known_x = torch.zeros(1, self.horizon, n_channels, device=dev)
            known_x[0, : t + 1] = torch.from_numpy(prefix).to(dev)
            known_mask = torch.zeros(1, self.horizon, dtype=torch.bool, device=dev)
            known_mask[0, : t + 1] = True
            context_np = self.context_scaler.to_unit(self.view.context(states))
            key = context_np.tobytes()
            if self._embeddings is None or self._embeddings[0] != key:   # once per campaign
                context = torch.from_numpy(context_np).to(dev)[None]
                cond = self.w.sub("cond")
                self._embeddings = (key, context, condition(cond, context, self.outcome), condition(cond, context, None))
            _, context, emb_cond, emb_null = self._embeddings
            generator = torch.Generator(device=dev).manual_seed(torch_seed(seed, "diffbid/plan", t))
            x0 = self._ddim(self._model_fn(emb_cond, emb_null, known_mask), (1, self.horizon, n_channels), known_x,
                            known_mask, generator)
            offsets = torch.arange(-2, 2, device=dev)
            idx = (torch.tensor([t], device=dev)[:, None] + offsets[None]).clamp_min(0)       # (1, 4)
            rows = torch.gather(x0, 1, idx[..., None].expand(-1, -1, n_channels))              # (1, 4, P)
            info = torch.from_numpy(self.info_scaler.to_unit(self.view.tick_info(states)[-1:])).to(dev)
            features = torch.cat([rows.flatten(1), context, info], dim=-1)
            unit = torch.tanh(mlp(self.w.sub("idm.net"), tuple(self.p["idm_layers"]), features)).squeeze(-1)
            a = float(self.bounds.from_unit(unit)[0])
        return float(self.bounds.clip(a)), x0[0].float().cpu().numpy()
