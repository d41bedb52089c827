import pytest

from avjax.config_utils import parse_config_arg


def test_parse():
  names, settings = parse_config_arg("quick, one_stage,seed=3,tag=abc",
                                     {"quick", "one_stage"}, {"seed", "tag"})
  assert names == {"quick", "one_stage"}
  assert settings == {"seed": 3, "tag": "abc"}
  assert parse_config_arg(None, {"quick"}) == (set(), {})


def test_unknown_token_and_key():
  with pytest.raises(ValueError, match="unknown config argument 'quik'"):
    parse_config_arg("quik", {"quick"}, config_name="x.py")
  with pytest.raises(ValueError, match="unknown config argument key 'sed'"):
    parse_config_arg("sed=1", {"quick"}, {"seed"})
