import pytest

from avjax.config_utils import parse_config_arg
from avjax.config_utils import positive_int_setting


def test_parse():
  names, settings = parse_config_arg(
      "quick, one_stage,seed=3,tag=abc", {"quick", "one_stage"}, {"seed", "tag"}
  )
  assert names == {"quick", "one_stage"}
  assert settings == {"seed": 3, "tag": "abc"}
  assert parse_config_arg(None, {"quick"}) == (set(), {})


def test_unknown_token_and_key():
  with pytest.raises(ValueError, match="unknown config argument 'quik'"):
    parse_config_arg("quik", {"quick"}, config_name="x.py")
  with pytest.raises(ValueError, match="unknown config argument key 'sed'"):
    parse_config_arg("sed=1", {"quick"}, {"seed"})


def test_load_config_file(tmp_path):
  import os
  from avjax.config_utils import load_config_file

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = load_config_file(
      os.path.join(root, "configs", "tstl_ca.py"), "quick,seed=4"
  )
  assert config.seed == 4 and config.method == "tstl_ca"
  with pytest.raises(FileNotFoundError, match="nope.py"):
    load_config_file(str(tmp_path / "nope.py"))
  bad = tmp_path / "bad.py"
  bad.write_text("x = 1\n")
  with pytest.raises(ValueError, match="no get_config"):
    load_config_file(str(bad))


def test_positive_int_setting():
  assert positive_int_setting({"steps": 7}, "steps", 3) == 7
  assert positive_int_setting({}, "steps", 3) == 3
  for bad in (0, -2, 1.5, "many", True):
    with pytest.raises(
        ValueError, match=r"cfg\.py: steps=.* is not a positive"
    ):
      positive_int_setting({"steps": bad}, "steps", 3, "cfg.py")
