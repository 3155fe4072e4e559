"""Items of a batch job: folders and manifests, their order, keys, targets and duplicates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cfattack.batch.manifest import collect_items, config_hash, list_images, read_manifest
from cfattack.batch.runner import batches_of
from cfattack.bundle import bundle_spec_path, read_bundle_spec
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import ExplainConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def spec():
    return read_bundle_spec(bundle_spec_path("default"))


def _copy(names, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def test_folder_items_are_sorted_recursive_and_skip_non_images(tmp_path, spec):
    root = _copy(["coat-1.png", "bag-1.png"], tmp_path / "in")
    _copy(["dress-1.png"], root / "sub")
    _copy(["sandal-1.png"], root / ".hidden")
    (root / "README.md").write_text("not an image")
    _copy(["shirt-1.png"], root / "report")  # the job's own output folder inside the input
    paths = list_images(root, exclude=[root / "report"])
    assert [p.relative_to(root).as_posix() for p in paths] == ["bag-1.png", "coat-1.png", "sub/dress-1.png"]
    items = collect_items(root, spec, config_hash="c0", target="Pullover", exclude=[root / "report"]).items
    assert [i.position for i in items] == [0, 1, 2]
    assert all(i.target == "pullover" and i.target_index == 2 and i.target_error is None for i in items)
    assert items[0].folder.startswith("bag-1-to-pullover-") and len(items[0].key) == 16


def test_keys_follow_content_target_and_config_not_the_name(tmp_path, spec):
    root = _copy(["coat-1.png"], tmp_path / "a")
    renamed = tmp_path / "b"
    renamed.mkdir()
    shutil.copy(EXAMPLES / "coat-1.png", renamed / "other-name.png")
    key = collect_items(root, spec, config_hash="c0", target="bag").items[0].key
    assert collect_items(renamed, spec, config_hash="c0", target="bag").items[0].key == key
    assert collect_items(root, spec, config_hash="c0", target="Bag").items[0].key == key  # same class
    assert collect_items(root, spec, config_hash="c0", target="coat").items[0].key != key
    assert collect_items(root, spec, config_hash="c1", target="bag").items[0].key != key


def test_csv_and_jsonl_manifests_with_own_and_default_targets(tmp_path, spec):
    _copy(["coat-1.png", "bag-1.png"], tmp_path / "img")
    (tmp_path / "m.csv").write_text(
        "Image , target,extra\nimg/coat-1.png,bag,x\n\nimg/bag-1.png,,y\nnope.png,giraffe,z\n")
    rows = read_manifest(tmp_path / "m.csv")
    assert [(r.image, r.target, r.line) for r in rows] == [
        (str(tmp_path / "img/coat-1.png"), "bag", 2), (str(tmp_path / "img/bag-1.png"), None, 4),
        (str(tmp_path / "nope.png"), "giraffe", 5)]
    items = collect_items(tmp_path / "m.csv", spec, config_hash="c", target="coat").items
    assert [(i.target, i.target_index) for i in items] == [("bag", 8), ("coat", 4), ("giraffe", None)]
    assert "giraffe" in items[2].target_error and items[2].image_sha256 is None
    no_default = collect_items(tmp_path / "m.csv", spec, config_hash="c").items
    assert no_default[1].target is None and "no target" in no_default[1].target_error

    lines = [{"image": "img/coat-1.png", "target": 3}, {"image": str(tmp_path / "img/bag-1.png")}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    items = collect_items(tmp_path / "m.jsonl", spec, config_hash="c", target="coat").items
    assert [(Path(i.image).name, i.target) for i in items] == [("coat-1.png", "dress"), ("bag-1.png", "coat")]


def test_targets_from_gives_each_image_its_targets(tmp_path, spec):
    root = _copy(["coat-1.png", "bag-1.png", "dress-1.png"], tmp_path / "img")
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"image": "img/coat-1.png", "target": "bag"}) + "\n"
        + json.dumps({"image": "img/coat-1.png", "target": "dress"}) + "\n"
        + json.dumps({"image": "img/bag-1.png", "target": "coat"}) + "\n")
    items = collect_items(root, spec, config_hash="c", targets_from=tmp_path / "t.jsonl").items
    assert [(Path(i.image).name, i.target) for i in items] == [
        ("bag-1.png", "coat"), ("coat-1.png", "bag"), ("coat-1.png", "dress"), ("dress-1.png", None)]
    assert "--targets-from" in items[3].target_error
    with pytest.raises(InvalidInputError, match="not both"):
        collect_items(root, spec, config_hash="c", target="bag", targets_from=tmp_path / "t.jsonl")


def test_duplicates_are_explained_once_and_limit_counts_distinct_items(tmp_path, spec):
    _copy(["coat-1.png"], tmp_path)
    shutil.copy(EXAMPLES / "coat-1.png", tmp_path / "copy.png")
    (tmp_path / "m.csv").write_text("image,target\ncoat-1.png,bag\ncopy.png,bag\ncoat-1.png,dress\ncoat-1.png,sandal\n")
    found = collect_items(tmp_path / "m.csv", spec, config_hash="c")
    assert [i.target for i in found.items] == ["bag", "dress", "sandal"] and found.duplicates == 1
    limited = collect_items(tmp_path / "m.csv", spec, config_hash="c", limit=2)
    assert [i.target for i in limited.items] == ["bag", "dress"]


@pytest.mark.parametrize("content, fragment", [
    ("target\nbag\n", "no 'image' column"),
    ("", "empty"),
    ("image,target\n,bag\n", "line 2"),
])
def test_bad_csv_manifests_are_refused_naming_the_problem(tmp_path, content, fragment):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(InvalidInputError, match=fragment):
        read_manifest(tmp_path / "m.csv")


@pytest.mark.parametrize("content, fragment", [
    ('{"image": "a.png"}\n{oops\n', "line 2: not valid JSON"),
    ('["a.png"]\n', "JSON object"),
    ('{"image": 3}\n', "'image' must be a string"),
    ('{"image": "a.png", "target": true}\n', "'target' must be"),
])
def test_bad_jsonl_manifests_are_refused_naming_the_line(tmp_path, content, fragment):
    (tmp_path / "m.jsonl").write_text(content)
    with pytest.raises(InvalidInputError, match=fragment):
        read_manifest(tmp_path / "m.jsonl")


def test_bad_inputs(tmp_path, spec):
    with pytest.raises(InvalidInputError, match="not found"):
        collect_items(tmp_path / "missing", spec, config_hash="c", target="bag")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InvalidInputError, match="folder of images or a manifest"):
        collect_items(tmp_path / "x.txt", spec, config_hash="c", target="bag")
    with pytest.raises(InvalidInputError, match="giraffe"):
        collect_items(tmp_path, spec, config_hash="c", target="giraffe")


def test_config_hash_changes_with_settings_and_classifier(spec):
    path = bundle_spec_path("default")
    base = config_hash(ExplainConfig().model_dump_json(), spec, path, "baseline")
    assert base == config_hash(ExplainConfig().model_dump_json(), spec, path, "baseline")
    other = ExplainConfig.model_validate({"attack": {"steps": 7}})
    assert config_hash(other.model_dump_json(), spec, path, "baseline") != base
    assert config_hash(ExplainConfig().model_dump_json(), spec, path, "other") != base


def test_batches_are_cut_from_the_full_list_and_dealt_round_robin():
    assert batches_of(10, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert batches_of(10, 4, rank=0, world_size=2) == [range(0, 4), range(8, 10)]
    assert batches_of(10, 4, rank=1, world_size=2) == [range(4, 8)]
    assert batches_of(0, 4) == []
    with pytest.raises(InvalidInputError):
        batches_of(3, 0)
