import pytest

from leoflow.domain.dag import DAG, Param
from leoflow.domain.params import ParamIssue, ParamsError, param_schema_errors, resolve_params


def _dag(**params: Param) -> DAG:
    return DAG(dag_id="d", tasks={}, params=params)


DAG_WITH_PARAMS = _dag(
    n=Param("n", 3, {"type": "integer", "minimum": 1, "maximum": 5}),
    name=Param("name", None, {"type": "string"}),
    mode=Param("mode", "fast", {"enum": ["fast", "slow"]}),
    anything=Param("anything", None, {}),
    when=Param("when", "2024-01-01", {"type": "string", "format": "date"}),
)


def test_defaults_and_conf_values() -> None:
    assert resolve_params(DAG_WITH_PARAMS, {"name": "ada"}) == {
        "n": 3, "name": "ada", "mode": "fast", "anything": None, "when": "2024-01-01"}
    assert resolve_params(DAG_WITH_PARAMS, {"name": "x", "n": 5, "mode": "slow"})["n"] == 5


def test_extra_conf_keys_pass_through() -> None:
    assert resolve_params(DAG_WITH_PARAMS, {"name": "x", "extra": [1]})["extra"] == [1]


def test_every_problem_is_named() -> None:
    with pytest.raises(ParamsError) as err:
        resolve_params(DAG_WITH_PARAMS, {"n": 9, "mode": "medium", "when": "yesterday"})
    assert err.value.issues == (
        ParamIssue("n", "9 is greater than the maximum of 5"),
        ParamIssue("name", "no value passed and the param has no default value"),
        ParamIssue("mode", "'medium' is not one of ['fast', 'slow']"),
        ParamIssue("when", "'yesterday' is not a 'date'"),
    )
    assert str(err.value).startswith("param 'n': 9 is greater than the maximum of 5; param 'name': ")


def test_nested_field_path() -> None:
    dag = _dag(cfg=Param("cfg", {"a": 1}, {"type": "object", "properties": {"a": {"type": "integer"}}}))
    with pytest.raises(ParamsError) as err:
        resolve_params(dag, {"cfg": {"a": "x"}})
    assert err.value.issues == (ParamIssue("cfg.a", "'x' is not of type 'integer'"),)


def test_nullable_param_without_default() -> None:
    dag = _dag(opt=Param("opt", None, {"type": ["string", "null"]}))
    assert resolve_params(dag, None) == {"opt": None}


def test_conf_must_be_an_object() -> None:
    with pytest.raises(ParamsError, match=r"^param 'conf': must be a JSON object, got list$"):
        resolve_params(DAG_WITH_PARAMS, [1])  # type: ignore[arg-type]


def test_param_schema_errors() -> None:
    assert param_schema_errors(Param("p", 1, {"type": "integer"})) == []
    assert param_schema_errors(Param("p", "a", {"type": "integer"})) == [
        "default 'a' is invalid: 'a' is not of type 'integer'"]
    assert param_schema_errors(Param("p", 1, {"minimum": "zero"})) == [
        "invalid JSON schema at minimum: 'zero' is not of type 'number'"]
