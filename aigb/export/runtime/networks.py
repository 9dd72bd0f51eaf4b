"""The trained networks of aigb's learned strategies, as functions of plain weight tensors.

No ``nn.Module`` is built: each forward pass calls the ``torch.nn.functional`` operation the
corresponding aigb module calls (``F.linear`` for ``nn.Linear``, ``F.layer_norm`` for
``nn.LayerNorm``, ...), on the module's own state-dict tensors, so the outputs equal aigb's bit for
bit and loading touches no random generator. Weight names are aigb's state-dict keys.

* ``state_action``: BC, IQL, CQL -- normalise the state, MLP, tanh of the first output (the
  policy's mean unit action), mapped to the action bounds.
* ``dt_action``: the Decision Transformer's K-tick window (return-to-go, state, action tokens,
  causal attention) -> the action at the current tick.

This file is copied into exported folders: it imports numpy, torch and the standard library only
(torch 1.12 or later; attention falls back to an explicit softmax where torch lacks
``scaled_dot_product_attention``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class Weights:
    """Tensors by aigb state-dict name, viewed under a prefix: ``w.sub("blocks.0")["ln1.weight"]``."""

    def __init__(self, tensors: dict, prefix: str = "") -> None:
        self.tensors, self.prefix = tensors, prefix

    def __getitem__(self, name: str) -> torch.Tensor:
        key = self.prefix + name
        if key not in self.tensors:
            raise KeyError("weights.pt has no tensor %r" % key)
        return self.tensors[key]

    def __contains__(self, name: str) -> bool:
        return self.prefix + name in self.tensors

    def sub(self, name: str) -> "Weights":
        return Weights(self.tensors, self.prefix + name + ".")


def linear(w: Weights, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w["weight"], w["bias"] if "bias" in w else None)


def layer_norm(w: Weights, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w["weight"], w["bias"], 1e-5)


def mlp(w: Weights, layers, x: torch.Tensor, activation=F.relu) -> torch.Tensor:
    """aigb's ``mlp``: Linear, activation, ..., Linear; ``layers`` are the Linear indices in the Sequential."""
    for j, index in enumerate(layers):
        x = linear(w.sub(str(index)), x)
        if j < len(layers) - 1:
            x = activation(x)
    return x


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d), masked where ``allowed`` is False) v; torch's fused kernel where it exists."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class Normaliser:
    """aigb's ``Normalizer``: (state - mean) / std clipped to +-clip; rewards divided by reward_scale."""

    def __init__(self, params: dict, w: Weights) -> None:
        self.mean = w["state_mean"].to(torch.float32)
        self.std = w["state_std"].to(torch.float32)
        self.clip = float(params["clip"])
        self.reward_scale = float(params["reward_scale"])

    def states(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)

    def rewards(self, r: torch.Tensor) -> torch.Tensor:
        return r / self.reward_scale


class Bounds:
    """The action interval [low, high] and its map to the networks' unit interval."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = float(low), float(high)
        self.mid, self.half = 0.5 * (self.low + self.high), 0.5 * (self.high - self.low)

    def to_unit(self, a):
        return (a - self.mid) / self.half

    def from_unit(self, u):
        return self.mid + self.half * u

    def clip(self, a):
        if isinstance(a, torch.Tensor):
            return a.clamp(self.low, self.high)
        return np.clip(a, self.low, self.high)


class StatePolicy:
    """BC / IQL / CQL: the action from the current state only."""

    def __init__(self, params: dict, tensors: dict) -> None:
        w = Weights(tensors)
        self.normaliser = Normaliser(params["normalizer"], w.sub("normalizer"))
        self.bounds = Bounds(*params["action_bounds"])
        self.actor = w.sub("actor")
        self.layers = tuple(params["actor_layers"])

    def act(self, states: np.ndarray, actions, rewards) -> float:
        with torch.no_grad():
            s = self.normaliser.states(torch.from_numpy(np.ascontiguousarray(states[-1:], dtype=np.float32)))  # (1, D)
            unit = torch.tanh(mlp(self.actor, self.layers, s)[..., 0])                                       # (1,)
        return float(self.bounds.clip(self.bounds.from_unit(float(unit[0]))))


class DecisionTransformer:
    """The Decision Transformer: tokens (rtg_k, s_k, a_k) of the last K ticks, causal, action at s_t."""

    def __init__(self, params: dict, tensors: dict) -> None:
        w = Weights(tensors)
        self.normaliser = Normaliser(params["normalizer"], w.sub("normalizer"))
        self.bounds = Bounds(*params["action_bounds"])
        self.model = w.sub("model")
        self.n_layers, self.n_heads = int(params["n_layers"]), int(params["n_heads"])
        self.context_len, self.max_ticks = int(params["context_len"]), int(params["max_ticks"])
        self.target_return = float(params["target_return"])
        # Exports written before campaign targets carry one target return for every campaign.
        self.target_scale = params.get("target_scale", "data")
        self.target_efficiency = float(params.get("target_efficiency", float("nan")))
        self.campaign_columns = tuple(int(i) for i in params.get("campaign_columns", (-1, -1)))
        # Exports written before score decrements count the return-to-go down by the conversions.
        self.rtg_decrement = params.get("rtg_decrement", "conversions")
        self.score_columns = tuple(int(i) for i in params.get("score_columns", (-1, -1, -1)))
        self.beta = float(params.get("beta", 2.0))

    def earned(self, states: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """What the campaign had earned before each tick (aigb.algos.dt.DTPolicy.earned)."""
        if self.rtg_decrement == "conversions":
            return np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
        spend, conversions, target_cpa = (states[:, i].astype(np.float64) for i in self.score_columns)
        with np.errstate(divide="ignore", invalid="ignore"):   # aigb.score.cpa_penalty
            ratio = np.where(spend > 0, target_cpa * conversions / np.where(spend > 0, spend, 1.0), np.inf)
        return conversions * np.minimum(1.0, np.where(conversions > 0, ratio, 1.0) ** self.beta)

    def target(self, first_state: np.ndarray) -> float:
        """The return-to-go at tick 0: the score efficiency x the campaign's B / C read from its first
        state, or the one target return (aigb.algos.dt.DTPolicy.target)."""
        if self.target_scale == "data" or not math.isfinite(self.target_efficiency):
            return self.target_return
        budget, target_cpa = (float(first_state[i]) for i in self.campaign_columns)
        return self.target_efficiency * budget / target_cpa

    def _forward(self, s, a_unit, rtg, tick, mask) -> torch.Tensor:
        m = self.model
        b, k, _ = s.shape
        t_emb = F.embedding(tick, m["tick_emb.weight"])                                   # (B, K, E)
        tokens = torch.stack([
            linear(m.sub("rtg_emb"), rtg.unsqueeze(-1)) + t_emb,
            linear(m.sub("state_emb"), s) + t_emb,
            linear(m.sub("action_emb"), a_unit.unsqueeze(-1)) + t_emb,
        ], dim=2).reshape(b, 3 * k, -1)                                                   # (B, 3K, E)
        x = layer_norm(m.sub("emb_norm"), tokens)
        real = mask.bool().repeat_interleave(3, dim=1)                                    # (B, 3K)
        causal = torch.ones(3 * k, 3 * k, dtype=torch.bool).tril()
        allowed = (causal & (real.unsqueeze(1) | torch.eye(3 * k, dtype=torch.bool))).unsqueeze(1)  # (B, 1, 3K, 3K)
        for i in range(self.n_layers):
            blk = m.sub("blocks.%d" % i)
            h = layer_norm(blk.sub("ln1"), x)
            length, e = h.shape[1], h.shape[2]
            q, kk, v = linear(blk.sub("attn.qkv"), h).view(b, length, 3, self.n_heads, e // self.n_heads).permute(2, 0, 3, 1, 4)
            out = attention(q, kk, v, allowed)
            x = x + linear(blk.sub("attn.proj"), out.transpose(1, 2).reshape(b, length, e))
            x = x + linear(blk.sub("out"), F.gelu(linear(blk.sub("fc"), layer_norm(blk.sub("ln2"), x))))
        x = layer_norm(m.sub("out_norm"), x).reshape(b, k, 3, -1)
        return torch.tanh(linear(m.sub("head"), x[:, :, 1]).squeeze(-1))                # (B, K)

    def act(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> float:
        t = states.shape[0] - 1
        if t >= self.max_ticks:
            raise ValueError("tick %d is beyond the model's max_ticks %d" % (t, self.max_ticks))
        obs = np.asarray(states, dtype=np.float32)
        rewards = np.asarray(rewards, dtype=np.float32)
        rtg = (self.target(obs[0]) - self.earned(obs, rewards)).astype(np.float32)
        action = np.concatenate([np.asarray(actions, dtype=np.float32), np.zeros(1, np.float32)])
        tick = np.arange(t + 1, dtype=np.int64)
        n, k = obs.shape[0], self.context_len
        if n > k:
            obs, action, rtg, tick, n = obs[-k:], action[-k:], rtg[-k:], tick[-k:], k
        pad = k - n
        window = {
            "obs": np.concatenate([np.zeros((pad, obs.shape[1]), np.float32), obs]).astype(np.float32),
            "action": np.concatenate([np.zeros(pad, np.float32), action]).astype(np.float32),
            "rtg": np.concatenate([np.zeros(pad, np.float32), rtg]).astype(np.float32),
            "timestep": np.concatenate([np.zeros(pad, np.int64), tick]).astype(np.int64),
            "mask": np.concatenate([np.zeros(pad, np.float32), np.ones(n, np.float32)]),
        }
        x = {key: torch.from_numpy(v).unsqueeze(0) for key, v in window.items()}        # (1, K, .)
        bounds, norm = self.bounds, self.normaliser
        with torch.no_grad():
            if self.target_scale == "efficiency":   # returns in units of what B buys at C (aigb.algos.dt.efficiency_to_go)
                b, c = x["obs"][..., self.campaign_columns[0]], x["obs"][..., self.campaign_columns[1]]
                rtg = torch.where(x["mask"] > 0, x["rtg"] * c / b.clamp_min(1e-9), torch.zeros_like(x["rtg"]))
            else:
                rtg = norm.rewards(x["rtg"])
            pred = bounds.from_unit(self._forward(norm.states(x["obs"]), bounds.to_unit(bounds.clip(x["action"])),
                                                  rtg, x["timestep"], x["mask"]))
        return float(bounds.clip(float(pred[0, -1])))
