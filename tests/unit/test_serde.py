"""Typed JSON conversion: every wrong shape is one ShapeError naming the path of the bad field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envcap._serde import ShapeError, from_json, to_json
from envcap.lock import Blas, CudaStack, Distribution, GpuDevice, Snapshot, canonical_json


def shape_error(cls: type, data: object) -> ShapeError:
    with pytest.raises(ShapeError) as info:
        from_json(cls, data)
    return info.value


def test_wrong_scalar_names_its_path() -> None:
    error = shape_error(Snapshot, {"python": {"version": 3}})
    assert error.path == "python.version"
    assert "expected a string" in str(error)


def test_list_items_are_indexed_in_the_path() -> None:
    data = {"distributions": [{"name": "a", "version": "1"}, {"name": "b", "version": ["2"]}]}
    assert shape_error(Snapshot, data).path == "distributions[1].version"


def test_missing_required_field() -> None:
    assert shape_error(Distribution, {"name": "x"}).path == "version"


def test_bool_and_int_are_not_interchangeable() -> None:
    assert shape_error(GpuDevice, {"index": True, "name": "x"}).path == "index"
    assert shape_error(Distribution, {"name": "x", "version": "1", "requested": 1}).path == "requested"


def test_float_accepts_int_but_not_bool() -> None:
    from envcap.lock import Cpu

    assert from_json(Cpu, {"cgroup_cpu_limit": 2}).cgroup_cpu_limit == 2.0
    assert shape_error(Cpu, {"cgroup_cpu_limit": False}).path == "cgroup_cpu_limit"


def test_dict_values_are_typed_and_keys_in_the_path() -> None:
    error = shape_error(CudaStack, {"components": {"cudnn": {"version": 9}}})
    assert error.path == 'components["cudnn"].version'  # keys quoted: a damaged key cannot break the line


def test_tuple_needs_a_list_and_object_needs_a_dict() -> None:
    assert shape_error(Blas, {"libraries": {"a": 1}}).path == "libraries"
    assert shape_error(Snapshot, {"python": ["3.11"]}).path == "python"
    assert shape_error(Snapshot, "not an object").path == ""


def test_none_is_accepted_only_where_the_type_allows_it() -> None:
    assert from_json(Snapshot, {"gpu": None}).gpu is None
    assert shape_error(Distribution, {"name": None, "version": "1"}).path == "name"


def test_to_json_and_back_is_identity() -> None:
    dist = Distribution(name="torch", version="2.13.0+cpu", problems=("a",), shadowed=("/x",))
    data = to_json(dist)
    assert data["problems"] == ["a"] and data["origin"] is None
    assert from_json(Distribution, data) == dist


def test_shape_error_shows_short_values_only() -> None:
    error = shape_error(GpuDevice, {"index": "y" * 1000 + "\n", "name": "x"})
    assert error.path == "index"
    assert len(str(error)) < 120 and "\n" not in str(error)


# -- canonical JSON: the lock's bytes are json.dumps's, written by a faster hand ----------------------
_JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                 | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(['"', "\\", "\x7f", "\n"])))
_JSON_VALUES = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(value=_JSON_VALUES)
def test_canonical_json_writes_the_bytes_json_dumps_writes(value: object) -> None:
    expected = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert canonical_json(value) == expected


def test_canonical_json_leaves_unusual_values_to_json_dumps() -> None:
    class Text(str):
        pass

    deep: list[object] = []
    cursor = deep
    for _ in range(40):  # deeper than the fast writer's table of indents
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    for value in ({"a": Text("x"), "t": (1, 2.5)}, {1: "int key"}, deep, [float("nan")]):
        assert canonical_json(value) == json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
