"""Sweep grids and the executor's options, without a cluster."""

from __future__ import annotations

import pytest

from dist_train.config import ConfigError
from dist_train.launch.executor import SlurmOptions, parse_sbatch_options, time_minutes
from dist_train.launch.sweep import point_name, read_sweep_file, sweep_points


def test_sweep_args_make_the_product_in_order():
    points = sweep_points(["objective.visual=0,1", "optim.lr=1e-4,3e-4"], None)
    assert points == [["objective.visual=0", "optim.lr=1e-4"], ["objective.visual=0", "optim.lr=3e-4"],
                      ["objective.visual=1", "optim.lr=1e-4"], ["objective.visual=1", "optim.lr=3e-4"]]
    assert sweep_points([], None) == [[]]
    assert sweep_points(["optim.betas=[0.9,0.98],[0.9,0.999]"], None) == [["optim.betas=[0.9,0.98]"],
                                                                            ["optim.betas=[0.9,0.999]"]]


def test_sweep_file_holds_a_grid_or_a_list_of_points(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("objective.visual: [0, 1]\nobjective.cloze: [0.5]\n")
    assert read_sweep_file(grid) == [["objective.visual=0", "objective.cloze=0.5"],
                                     ["objective.visual=1", "objective.cloze=0.5"]]
    ablations = tmp_path / "ablations.yaml"
    ablations.write_text("- {objective.visual: 0}\n- {objective.transitive: 0, objective.cloze: 0}\n")
    points = sweep_points(["seed=1,2"], ablations)
    assert points == [["objective.visual=0", "seed=1"], ["objective.visual=0", "seed=2"],
                      ["objective.transitive=0", "objective.cloze=0", "seed=1"],
                      ["objective.transitive=0", "objective.cloze=0", "seed=2"]]
    assert point_name(points[2]) == "objective.transitive=0,objective.cloze=0,seed=1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective.visual: 0\n")
    with pytest.raises(ConfigError, match="objective.visual"):
        read_sweep_file(bad)
    with pytest.raises(ConfigError, match="seed"):
        sweep_points(["seed=1,2", "seed=3"], None)


def test_point_names_are_safe_folder_names():
    assert point_name(["data.shards=/data/coco", "optim.lr=1e-3"]) == "data.shards=_data_coco,optim.lr=1e-3"


def test_time_and_sbatch_options():
    assert [time_minutes(t) for t in ("90", "02:00:00", "1-00:00:00", "1-12", "10:30")] == [90, 120, 1440, 2160, 11]
    with pytest.raises(ValueError, match="--time"):
        time_minutes("tomorrow")
    assert parse_sbatch_options(["exclusive", "--mail-type=END"]) == {"exclusive": True, "mail-type": "END"}
    assert SlurmOptions(nodes=2, gpus_per_node=8).num_tasks() == 16
    assert SlurmOptions(tasks_per_node=2).ntasks_per_node() == 2
    with pytest.raises(ValueError, match="one task per GPU"):
        SlurmOptions(gpus_per_node=4, tasks_per_node=2).ntasks_per_node()
