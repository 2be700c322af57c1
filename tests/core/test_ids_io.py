"""Path-safe ids, image shards and tables: round trips and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galmap.core.failures import FailureLog, gather_failures
from galmap.core.ids import is_safe_id, mock_id, sanitize_id
from galmap.core.io import (
    Shard,
    ShardError,
    atomic_path,
    read_shard,
    read_table,
    training_checkpoint,
    write_shard,
    write_table,
)


def _shard(n=3, bands=("g", "r")):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, len(bands), 8, 8)).astype(np.float32)
    return Shard(
        images=images,
        ivar=np.ones_like(images),
        ids=np.array([mock_id(i) for i in range(n)], dtype=object),
        attrs={
            "survey": "decals",
            "bands": list(bands),
            "pixscale_arcsec": 0.262,
            "psf_fwhm_arcsec": [1.3, 1.2],
        },
        extra={"flags": np.arange(n, dtype=np.int32)},
    )


@pytest.mark.parametrize(
    "raw, expected",
    [("J123456.7+012345", "J123456.7_012345"), ("../../etc/passwd", "__.._etc_passwd"), ("a b/c", "a_b_c")],
)
def test_sanitize_id(raw, expected):
    out = sanitize_id(raw)
    assert out == expected
    assert is_safe_id(out)
    assert "/" not in out and not out.startswith(".")


def test_sanitize_id_rejects_empty():
    with pytest.raises(ValueError, match="no usable characters"):
        sanitize_id("///")


def test_shard_round_trip(tmp_path):
    shard = _shard()
    path = tmp_path / "shard-0000.h5"
    write_shard(path, shard)
    back = read_shard(path)
    np.testing.assert_array_equal(back.images, shard.images)
    np.testing.assert_array_equal(back.ivar, shard.ivar)
    assert list(back.ids) == list(shard.ids)
    assert back.bands == ["g", "r"]
    assert back.attrs["pixscale_arcsec"] == pytest.approx(0.262)
    np.testing.assert_array_equal(back.extra["flags"], [0, 1, 2])
    assert not list(tmp_path.glob(".*")), "temporary file left behind"


def test_truncated_shard_names_the_file(tmp_path):
    path = tmp_path / "shard-0001.h5"
    write_shard(path, _shard(n=50))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"shard-0001\.h5.*truncated or corrupt"):
        read_shard(path)


def test_corrupt_shard_names_the_file(tmp_path):
    path = tmp_path / "shard-0002.h5"
    path.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(ShardError, match=r"shard-0002\.h5"):
        read_shard(path)


def test_missing_dataset_is_reported(tmp_path):
    import h5py

    path = tmp_path / "shard-0003.h5"
    with h5py.File(path, "w") as fh:
        fh["images"] = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ShardError, match=r"shard-0003\.h5 lacks dataset\(s\) ivar, ids"):
        read_shard(path)


def test_missing_shard_is_reported(tmp_path):
    with pytest.raises(ShardError, match="does not exist"):
        read_shard(tmp_path / "nope.h5")


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "table.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_training_checkpoint_is_kept_for_a_rerun_only_when_the_training_fails(tmp_path):
    model = tmp_path / "z8" / "model.pt"
    model.parent.mkdir()
    with pytest.raises(RuntimeError, match="killed"), training_checkpoint(model) as ckpt:
        ckpt.write_bytes(b"epoch 3")
        raise RuntimeError("killed in epoch 4")
    assert ckpt == model.with_name("checkpoint.pt") and ckpt.read_bytes() == b"epoch 3"  # resumable
    with training_checkpoint(model) as again:
        assert again == ckpt
        model.write_bytes(b"weights")
    assert not ckpt.exists() and model.exists()  # done: nothing left to resume


def test_table_round_trip_and_bad_table(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "x": [1.0, 2.0]})
    write_table(tmp_path / "t.parquet", df)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), df)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(OSError, match=r"bad\.parquet cannot be read"):
        read_table(tmp_path / "bad.parquet")


def test_failures_table(tmp_path):
    log = FailureLog("preprocess")
    log.add("mock-0000001", "no source detected")
    log.write(tmp_path / "a.csv")
    FailureLog("preprocess").write(tmp_path / "b.csv")
    both = gather_failures([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert list(both.columns) == ["id", "stage", "reason"]
    assert both.to_dict("records") == [{"id": "mock-0000001", "stage": "preprocess", "reason": "no source detected"}]
