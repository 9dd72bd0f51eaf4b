"""DiffBid's typed serving config: spec options read as ``--set`` reads values, modes that exclude
each other as types, named presets."""

import json

import pytest

from aigb.algos.diffbid.serving import (
    SERVING_PRESETS, ByCritic, ByEvaluator, ByPlan, Candidates, Guidance, Levels, ServingConfig, split_preset,
)
from aigb.configs import parse_value
from aigb.strategies.diffbid import parse_diffbid_spec, serving_config
from aigb.types import ConfigError


def test_values_are_read_as_set_reads_them():
    # '.5' is a number JSON does not spell; 'true' a JSON boolean: the --set parser reads both
    assert parse_diffbid_spec("b.pt?w=.5")[1] == {"guidance": parse_value("w", ".5")}
    assert parse_value("w", ".5") == 0.5
    for text, message in (("b.pt?w=true", "option w: cannot use 'true' \\(must be a number\\)"),
                          ("b.pt?steps=[1]", "option steps: .*integer"),
                          ("b.pt?day_noise=1", "unknown option 'day_noise'")):
        with pytest.raises(ConfigError, match=message):
            parse_diffbid_spec(text)


def test_modes_are_types():
    assert serving_config("b.pt")[1] == ServingConfig()
    _, s = serving_config("b.pt?n=4&select=plan&steps=3")
    assert s.search == Candidates(4, ByPlan()) and s.sampling.steps == 3 and s.guidance is None
    assert serving_config("b.pt?n=4")[1].search == Candidates(4, ByEvaluator(None))
    assert serving_config("b.pt?n=4&evaluator=e.pt")[1].search.rank == ByEvaluator("e.pt")
    assert serving_config("b.pt?levels=8&change=0.3")[1].search == Levels(search_levels=8, max_change=0.3, rank=ByPlan())
    assert serving_config("b.pt?select=critic&critic=a.pt,b.pt&qsmooth=0.2")[1].search == Levels(rank=ByCritic("a.pt,b.pt", 0.2))
    g = serving_config("b.pt?guide=cpa:0.9&n=1")[1]
    assert g.search is None and g.guidance == Guidance("cpa:0.9") and g.guidance.auto
    assert not serving_config("b.pt?guide=cpa:0.9&strength=0")[1].guidance.auto
    with pytest.raises(ConfigError, match="a search is either candidates .* or a level planner's levels"):
        parse_diffbid_spec("b.pt?n=4&levels=8")
    with pytest.raises(ConfigError, match="a search is either candidates"):
        parse_diffbid_spec("b.pt?n=2&select=critic&critic=a.pt")


def test_to_dict_names_the_modes_and_is_json():
    d = serving_config("b.pt?select=critic&critic=a.pt&levels=32&steps=5&w=1")[1].to_dict()
    assert d["search"]["kind"] == "levels" and d["search"]["rank"] == {"by": "critic", "paths": "a.pt", "qsmooth": None}
    assert d["search"]["search_levels"] == 32 and d["sampling"]["steps"] == 5 and d["condition"]["guidance"] == 1.0
    assert serving_config("b.pt?n=3&select=plan")[1].to_dict()["search"]["rank"] == {"by": "plan"}
    json.dumps(d)


def test_presets_are_named_and_overridden_by_the_spec():
    assert split_preset("runs/a@b/best.pt") == ("runs/a@b/best.pt", None)     # an @ inside the path is the path's
    assert parse_diffbid_spec("b.pt@own") == ("b.pt", {"steps": 5})
    assert parse_diffbid_spec("b.pt@own?steps=3&w=1")[1] == {"steps": 3, "guidance": 1.0}
    assert parse_diffbid_spec("b.pt@fast")[1] == {"steps": 5, "max_change": 0.3}
    path, best = parse_diffbid_spec("runs/d/best.pt@best?critic=c1.pt,c2.pt")
    assert path == "runs/d/best.pt"
    assert best == {"steps": 5, "search_levels": 32, "select": "critic", "qsmooth": 0.2, "critic": "c1.pt,c2.pt"}
    assert serving_config("b.pt@best?critic=c.pt")[1].preset == "best"
    # the preset's options are spec options: the same spec written out gives the same options
    for name, query in SERVING_PRESETS.items():
        extra = "&critic=c.pt" if "critic" in query else ""
        assert parse_diffbid_spec(f"b.pt@{name}?{extra[1:]}")[1] == parse_diffbid_spec(f"b.pt?{query}{extra}")[1]
    with pytest.raises(ConfigError, match="select=critic and critic=CHECKPOINT go together"):
        parse_diffbid_spec("b.pt@best")
    with pytest.raises(ConfigError, match="unknown preset 'quick'; known: best, own, fast"):
        parse_diffbid_spec("b.pt@quick?w=1")
    with pytest.raises(ConfigError, match="needs a checkpoint path"):
        parse_diffbid_spec("@own")
