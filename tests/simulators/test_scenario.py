"""Scenario files: versioned, unknown keys are errors naming the key, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.runner import simulate_command
from simulators.scenario import ScenarioError, load_scenario, parse_scenario


def test_defaults_are_documented_values() -> None:
    sc = parse_scenario({"version": 1})
    assert sc.days == 7 and sc.interval == 15 and sc.slots_per_day == 96
    assert sc.injections.theft == 0.0
    assert sc.load.source == "synthetic"
    readme = (Path(__file__).resolve().parents[2] / "simulators" / "README.md").read_text()
    for key in (
        "meters_per_area",
        "dlt645_share",
        "theft_fraction",
        "missing_slots",
        "pv_source",
        "reread_days",
        "relay_stuck",
        "manual_read_time",
    ):
        assert f"`{key}`" in readme, key


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"version": 1, "aeras": 3}, "aeras"),
        ({"version": 1, "injections": {"theftt": 0.1}}, "injections.theftt"),
        ({"version": 1, "devices": {"baud": -1}}, "devices.baud"),
        ({"version": 2}, "version"),
        ({"areas": 2}, "version"),
        ({"version": 1, "load": {"source": "sgsc"}}, "load"),
    ],
)
def test_bad_keys_are_named(data: dict[str, object], key: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    assert info.value.key == key


def test_simulate_exits_2_on_unknown_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("version = 1\n[injections]\nthieves = 0.2\n")
    assert simulate_command(path, None, None, False) == 2
    assert "injections.thieves" in capsys.readouterr().err
    with pytest.raises(ScenarioError):
        load_scenario(tmp_path / "missing.toml")


def test_shipped_scenarios_parse() -> None:
    folder = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
    names = sorted(p.name for p in folder.glob("*.toml"))
    assert names == ["clean.toml", "real_shapes.toml", "realistic.toml"]
    for path in folder.glob("*.toml"):
        sc = load_scenario(path)
        assert sc.version == 1
    assert (
        load_scenario(folder / "clean.toml").injections == parse_scenario({"version": 1}).injections
    )


def test_relative_shape_paths_follow_the_scenario_file(shared_data: Path) -> None:
    from simulators.world import World

    path = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "real_shapes.toml"
    sc = load_scenario(path)
    # ../shared may be a symbolic link beside the checkout: compare real paths
    expected = (shared_data / "ieee_eulv" / "Daily_1min_100profiles").resolve()
    assert Path(sc.load.path).resolve() == expected
    assert Path(sc.load.pv_path).is_file()
    world = World(sc)
    world.ensure_day(0)
    assert world.area_days[0]["customer_import_kwh"].sum() > 0
